"""Confinement: every tool refuses paths outside its roots, by '..', by absolute path, and by a symlink leading out."""

from __future__ import annotations

from pathlib import Path

import pytest
from tools_fixtures import roots, ws  # noqa: F401 (fixtures)

from medbuilder.protocol.tools import (
    ToolError, Workspace, check_3D, copy_files, edit_file, list_files, load_med_data, normalize_image,
    preview_dirs, preview_files, read_files, run_script, verify_report, write_file,
)

ESCAPES = ["dotdot", "absolute", "symlink"]


def escape(kind: str, roots, name: str) -> str:
    """A path that reaches roots.outside/name by the given route."""
    return {"dotdot": f"../outside/{name}", "absolute": str(roots.outside / name), "symlink": f"link_out/{name}"}[kind]


READERS = {
    "read_files": lambda ws, p: read_files(ws, [p]),
    "list_files": lambda ws, p: list_files(ws, str(Path(p).parent)),
    "preview_files": lambda ws, p: preview_files(ws, p),
    "preview_dirs": lambda ws, p: preview_dirs(ws, str(Path(p).parent)),
    "load_med_data": lambda ws, p: load_med_data(ws, p),
    "check_3D": lambda ws, p: check_3D(ws, p, p),
    "verify_report": lambda ws, p: verify_report(ws, path=p),
}


@pytest.mark.parametrize("kind", ESCAPES)
@pytest.mark.parametrize("tool", sorted(READERS))
def test_readers_refuse_paths_outside(ws, roots, tool, kind):
    with pytest.raises(ToolError, match="outside the readable folders") as err:
        READERS[tool](ws, escape(kind, roots, "secret.txt"))
    assert str(roots.workspace) in str(err.value) and str(roots.data) in str(err.value)


@pytest.mark.parametrize("kind", ESCAPES)
def test_write_file_refuses_outside(ws, roots, kind):
    with pytest.raises(ToolError, match="outside the workspace"):
        write_file(ws, escape(kind, roots, "new.txt"), "x")
    assert not (roots.outside / "new.txt").exists()


@pytest.mark.parametrize("kind", ESCAPES)
def test_edit_file_refuses_outside(ws, roots, kind):
    with pytest.raises(ToolError, match="outside the workspace"):
        edit_file(ws, escape(kind, roots, "secret.txt"), "top", "bottom")
    assert (roots.outside / "secret.txt").read_text() == "top secret\n"


@pytest.mark.parametrize("kind", ESCAPES)
def test_copy_files_refuses_outside_source_and_destination(ws, roots, kind):
    with pytest.raises(ToolError, match="outside the readable folders"):
        copy_files(ws, [escape(kind, roots, "secret.txt")], "stolen.txt")
    assert not (roots.workspace / "stolen.txt").exists()
    (roots.workspace / "mine.txt").write_text("mine")
    with pytest.raises(ToolError, match="outside the workspace"):
        copy_files(ws, ["mine.txt"], escape(kind, roots, "planted.txt"))
    assert not (roots.outside / "planted.txt").exists()


@pytest.mark.parametrize("kind", ESCAPES)
def test_run_script_refuses_scripts_outside(ws, roots, kind):
    for command in (escape(kind, roots, "evil.py"), f"python {escape(kind, roots, 'evil.py')}"):
        with pytest.raises(ToolError, match="Scripts run only from the workspace"):
            run_script(ws, command)


@pytest.mark.parametrize("kind", ESCAPES)
def test_normalize_output_refused_outside(ws, roots, kind):
    image = roots.workspace / "img.npy"
    import numpy as np

    np.save(image, np.arange(16, dtype=np.float32).reshape(4, 4))
    with pytest.raises(ToolError, match="outside the workspace"):
        normalize_image(ws, "img.npy", "minmax", output_path=escape(kind, roots, "out.npy"))
    assert not (roots.outside / "out.npy").exists()


def test_symlinked_file_in_workspace_leading_out_is_refused(ws, roots):
    with pytest.raises(ToolError, match="outside"):
        read_files(ws, ["secret_link.txt"])
    with pytest.raises(ToolError, match="outside the workspace"):
        write_file(ws, "secret_link.txt", "overwritten")
    assert (roots.outside / "secret.txt").read_text() == "top secret\n"


def test_read_roots_are_readable_but_never_writable(ws, roots):
    assert "img1.png,0" in read_files(ws, [str(roots.data / "labels.csv")])[0].text
    before = (roots.data / "labels.csv").stat().st_mtime_ns
    for call in (
        lambda: write_file(ws, str(roots.data / "labels.csv"), "x"),
        lambda: edit_file(ws, str(roots.data / "labels.csv"), "label", "y"),
        lambda: copy_files(ws, [str(roots.refs / "template.py")], str(roots.data)),
    ):
        with pytest.raises(ToolError, match="outside the workspace"):
            call()
    assert (roots.data / "labels.csv").stat().st_mtime_ns == before
    assert sorted(p.name for p in roots.data.iterdir()) == ["labels.csv"]


def test_read_root_nested_in_workspace_stays_read_only(tmp_path):
    workspace = tmp_path / "ws"
    nested = workspace / "ReferenceFiles"
    nested.mkdir(parents=True)
    ctx = Workspace.create(workspace, [nested], output_chars=2000, script_timeout_s=5)
    with pytest.raises(ToolError, match="read-only folder"):
        write_file(ctx, "ReferenceFiles/x.py", "x")
    write_file(ctx, "ok.py", "x")


def test_workspace_inside_a_read_root_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="lies inside the read-only root"):
        Workspace.create(tmp_path / "data" / "ws", [tmp_path], output_chars=2000, script_timeout_s=5)


def test_missing_path_lists_neighbours(ws, roots):
    (roots.workspace / "train.py").write_text("x")
    with pytest.raises(ToolError, match="does not exist.*train.py"):
        read_files(ws, ["trian.py"])
