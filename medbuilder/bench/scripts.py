"""The bench's independent scripts, run in their own process from a checkout: the parity references
(``benchmarks/references/<task>.py``) and the standard-recipe baselines (``benchmarks/baselines/<task>.py``).
Each prints one JSON line last; a missing script, a time-out or a crash comes back as {"error": ...}."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from medbuilder import REPO_ROOT

REFERENCES = REPO_ROOT / "benchmarks" / "references"
BASELINES = REPO_ROOT / "benchmarks" / "baselines"
REFERENCE_TIMEOUT_S = 6 * 3600


def run_reference(task: str, config: Path, index_dir: Path, epochs: int | None, timeout_s: float) -> dict:
    """Run benchmarks/references/<task>.py and return its JSON line (or an error). `epochs`: the epochs the
    generated training completed; fewer than the config's (a time limit) stops the reference there too,
    with the same learning-rate schedule length."""
    extra = ["--stop-after", str(int(epochs))] if epochs else []
    return run_script(REFERENCES / f"{task}.py", config, index_dir, extra, timeout_s)


def run_baseline(task: str, config: Path, index_dir: Path, budget_s: float) -> dict:
    """Run benchmarks/baselines/<task>.py, MONAI's standard recipe for the task with its own choices (only the
    data facts come from `config`), within `budget_s` wall seconds; its JSON line (or an error)."""
    extra = ["--time-budget", f"{budget_s:.1f}"]
    return run_script(BASELINES / f"{task}.py", config, index_dir, extra, max(600.0, 3 * budget_s))


def run_script(script: Path, config: Path, index_dir: Path, extra: list[str], timeout_s: float) -> dict:
    """One benchmark script on a round's config and index folder; its last JSON line with the process's wall
    seconds, or an error."""
    if not script.exists():
        return {"error": f"{script} not found: run `medbuilder bench` from a checkout of the repository "
                         "(benchmarks/ is not part of the installed package)"}
    cmd = [sys.executable, str(script), "--config", str(config), "--index-dir", str(index_dir), *extra]
    started = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=str(script.parent))
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:.0f} s", "command": cmd}
    for line in reversed(done.stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                return {**json.loads(line), "command": cmd, "process_seconds": round(time.perf_counter() - started, 2)}
            except ValueError:
                break
    return {"error": f"exit {done.returncode}: {(done.stderr or done.stdout)[-1500:]}", "command": cmd}
