"""The shared indexer's remembered runs (protocol/indexing/memo.py): the same job on an unchanged dataset tree
gets the first run's files back without running again; a changed file or layout runs again; a preview never
brings back an index. Real sandboxed indexer runs on a small copy of Br35H JPEGs."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from medbuilder.protocol.indexing import DatasetFacts, IndexJob
from medbuilder.protocol.indexing.memo import run_indexer_script
from medbuilder.protocol.layout import Layout
from medbuilder.protocol.tools import Workspace
from medbuilder.protocol.tools.sandbox import SandboxConfig
from medbuilder.settings import Settings, get_settings

sys.path.insert(0, str(Path(__file__).parent))
from template_data import _br35h_dir  # noqa: E402

BUILT = ("train.json", "test.json", "label_dict.json", "indexing_report.json")


@pytest.fixture()
def dataset(tmp_path, monkeypatch):
    root = tmp_path / "data"
    for label in ("yes", "no"):
        (root / label).mkdir(parents=True)
        for source in sorted((_br35h_dir() / label).glob("*.jpg"))[:8]:
            shutil.copyfile(source, root / label / source.name)
    monkeypatch.setenv("MEDBUILDER_CACHE_DIR", str(tmp_path / "store"))
    get_settings.cache_clear()
    yield root
    get_settings.cache_clear()


def run(folder: Path, root: Path, layout: dict, preview: bool) -> tuple[int | None, str]:
    facts = DatasetFacts(root=str(root), task="diagnosis", dimension="2D", label_names=["no", "yes"],
                         normal_class="no")
    ctx = Workspace.create(folder, [root], output_chars=4000, script_timeout_s=120,
                           sandbox=SandboxConfig.from_settings(Settings()))
    job = IndexJob.of(facts, Layout.model_validate(layout)).model_dump_json()
    return run_indexer_script(ctx, "index_job.json", job, preview)


def remembered(store: Path) -> int:
    return len([p for p in store.glob("_host/indexer/*/*") if not p.name.startswith(".")])


FOLDERS = {"version": 1, "task": "diagnosis", "images": {"roots": ["."]}, "label": {"kind": "folder", "depth": 0}}


def test_the_same_job_on_the_same_tree_is_remembered(dataset, tmp_path):
    store = tmp_path / "store"
    first = run(tmp_path / "a", dataset, FOLDERS, preview=False)
    assert first[0] == 0 and "16 images found, 16 indexed" in first[1] and remembered(store) == 1
    again = run(tmp_path / "b", dataset, FOLDERS, preview=False)
    assert again == first and remembered(store) == 1
    for name in BUILT:
        assert (tmp_path / "b" / "index" / name).read_bytes() == (tmp_path / "a" / "index" / name).read_bytes()
    with open(next((dataset / "yes").iterdir()), "ab") as image:  # one file changes: the tree's key does
        image.write(b"\0")
    assert run(tmp_path / "c", dataset, FOLDERS, preview=False)[0] == 0 and remembered(store) == 2
    by_name = {**FOLDERS, "label": {"kind": "filename", "regex": "^([A-Za-z]+)"}, "label_map": {"y": "yes"}}
    assert run(tmp_path / "d", dataset, by_name, preview=False)[0] == 0 and remembered(store) == 3


def test_a_preview_brings_back_its_report_only(dataset, tmp_path):
    store, folder = tmp_path / "store", tmp_path / "ws"
    assert run(folder, dataset, FOLDERS, preview=True)[0] == 0 and remembered(store) == 1
    (folder / "index" / "train.json").write_text("[]")  # an index built before, in the same folder
    (folder / "index" / "layout_preview.json").unlink()
    assert run(folder, dataset, FOLDERS, preview=True)[0] == 0 and remembered(store) == 1
    assert (folder / "index" / "layout_preview.json").is_file()
    assert (folder / "index" / "train.json").read_text() == "[]"
    assert [p.name for p in next(store.glob("_host/indexer/*/*")).iterdir()] in (
        ["layout_preview.json", "output.txt"], ["output.txt", "layout_preview.json"])


def test_a_link_planted_in_the_index_folder_is_replaced_not_followed(dataset, tmp_path):
    folder, outside = tmp_path / "ws", tmp_path / "host-file.txt"
    assert run(folder, dataset, FOLDERS, preview=True)[0] == 0
    outside.write_text("the host's own file")
    target = folder / "index" / "layout_preview.json"
    target.unlink()
    target.symlink_to(outside)  # what an agent's script could leave in its workspace
    assert run(folder, dataset, FOLDERS, preview=True)[0] == 0  # restored from the memo
    assert outside.read_text() == "the host's own file"
    assert not target.is_symlink() and '"images_found": 16' in target.read_text()
