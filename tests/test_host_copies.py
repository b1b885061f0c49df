"""Host-side copies out of a workspace never follow a link an agent planted: round snapshots, bundle scripts
and the indexer's output. A symlink or a hard link to a secret is refused with a message naming the file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from medbuilder.protocol.run_folder import RunFolder
from medbuilder.protocol.untrusted import UntrustedFileError, copy_nofollow, read_text_nofollow

SECRET = "FAKE-PRIVATE-KEY-0451"


@pytest.fixture
def secret(tmp_path) -> Path:
    file = tmp_path / "home" / ".ssh" / "id_rsa"
    file.parent.mkdir(parents=True)
    file.write_text(SECRET)
    return file


def _run(tmp_path) -> RunFolder:
    run = RunFolder.new(tmp_path / "runs")
    run.workspace.mkdir(parents=True)
    return run


@pytest.mark.parametrize("plant", ["symlink", "hardlink", "linked folder"])
def test_snapshot_refuses_a_planted_link(tmp_path, secret, plant):
    from medbuilder.review.evaluate import snapshot_round

    run = _run(tmp_path)
    (run.workspace / "config.json").write_text("{}")
    if plant == "symlink":
        (run.workspace / "metrics.json").symlink_to(secret)
    elif plant == "hardlink":
        os.link(secret, run.workspace / "metrics.json")
    else:
        (run.workspace / "checkpoints").symlink_to(secret.parent, target_is_directory=True)
        (secret.parent / "model.pt").write_text(SECRET)
    with pytest.raises(ValueError, match="cannot be kept: .*(link|hard links)"):
        snapshot_round(run, 0)
    copied = [p for p in (run.root / "rounds").rglob("*") if p.is_file()] if (run.root / "rounds").exists() else []
    assert all(SECRET not in p.read_text(errors="replace") for p in copied)


def test_copy_and_read_keep_plain_files_and_refuse_the_rest(tmp_path, secret):
    root = tmp_path / "ws"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "plain.txt").write_text("plain")
    (root / "link.txt").symlink_to(secret)
    os.mkfifo(root / "fifo")
    assert copy_nofollow(root, "sub/plain.txt", tmp_path / "out" / "plain.txt").read_text() == "plain"
    for rel, words in (("link.txt", "is a link"), ("fifo", "not a regular file"), ("../home/.ssh/id_rsa", "inside"),
                       ("/etc/passwd", "inside")):
        with pytest.raises(UntrustedFileError, match=words):
            read_text_nofollow(root, rel)
    with pytest.raises(UntrustedFileError, match="larger than 3 bytes"):
        read_text_nofollow(root, "sub/plain.txt", max_bytes=3)


def test_bundle_refuses_a_script_that_is_a_link(tmp_path, secret):
    import json

    import torch

    from medbuilder.delivery.bundle import BundleError, export_bundle

    run = _run(tmp_path)
    (run.workspace / "predict.py").symlink_to(secret)
    round_dir = run.root / "rounds" / "0"
    (round_dir / "checkpoints").mkdir(parents=True)
    (round_dir / "metrics.json").write_text(json.dumps({"task": "diagnosis", "metric": "auroc", "value": 0.5}))
    (round_dir / "config.json").write_text(json.dumps({"label_dict": {"no": 0, "yes": 1}}))
    torch.save({"state_dict": {}, "config": {}}, round_dir / "checkpoints" / "model.pt")
    with pytest.raises(BundleError, match="predict.py cannot be copied: .*is a link"):
        export_bundle(run.root, 0, "card")
    assert not any(SECRET in p.read_text(errors="replace") for p in run.root.rglob("*") if p.is_file()
                   and not p.is_symlink() and "rounds" not in p.parts)


def _workspace_with_template_code(tmp_path, task: str) -> Path:
    from medbuilder.review.trusted_code import template_code

    ws = tmp_path / "run" / "workspace"
    ws.mkdir(parents=True)
    for name, data in template_code(task).items():
        (ws / name).write_bytes(data)
    return ws


def test_edited_workspace_code_is_never_run_on_the_host(tmp_path):
    from medbuilder.review.interpret import load_predictor
    from medbuilder.review.segmentation_saliency import load_segmenter
    from medbuilder.review.trusted_code import EditedCodeError

    marker = tmp_path / "ran-on-the-host"
    for task, load in (("diagnosis", load_predictor), ("segmentation", load_segmenter)):
        ws = _workspace_with_template_code(tmp_path / task, task)
        (ws / "predict.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n" + (ws / "predict.py").read_text())
        with pytest.raises(EditedCodeError, match=f"predict.py in {ws} differ from medbuilder's {task} template"):
            load(ws, ws)
        assert not marker.exists()


def test_unedited_workspace_code_is_staged_from_medbuilders_own_copy(tmp_path):
    from medbuilder.review.trusted_code import stage_trusted_code, template_code

    ws = _workspace_with_template_code(tmp_path, "diagnosis")
    staged = stage_trusted_code("diagnosis", ws, tmp_path / "trusted")
    assert {p.name: p.read_bytes() for p in staged.iterdir()} == template_code("diagnosis")
    (ws / "model.py").unlink()
    (ws / "model.py").symlink_to(staged / "model.py")  # the same bytes, through a link: refused all the same
    from medbuilder.review.trusted_code import EditedCodeError
    with pytest.raises(EditedCodeError, match="model.py"):
        stage_trusted_code("diagnosis", ws, tmp_path / "trusted")
