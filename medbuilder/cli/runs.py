"""Finding a run folder from what a person types: a run id or a path."""

from __future__ import annotations

from pathlib import Path

from medbuilder.cli.common import fail
from medbuilder.protocol.run_folder import RunFolder
from medbuilder.settings import get_settings


def find_run(name: str) -> RunFolder:
    for candidate in (Path(name), get_settings().runs_dir / name):
        if (candidate / "run.json").exists():
            return RunFolder(candidate)
    runs = sorted(p.name for p in get_settings().runs_dir.glob("*") if (p / "run.json").exists())[-5:]
    fail(f"no run '{name}' (looked for {name}/run.json and {get_settings().runs_dir / name}/run.json). "
         f"Recent runs: {', '.join(runs) or '(none)'}")
