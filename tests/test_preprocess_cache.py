"""medbuilder's store of preprocessed images: made once with medbuilder's own template code, read-only to the
sandboxed scripts, the same tensors as the template's own chain, refused for edited code or paths outside the
dataset, within its size limit, shared by concurrent builds. Real Br35H JPEGs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from medbuilder.cache import MANIFEST, PreprocessStore, offer
from medbuilder.protocol.templates.fill import fill_template
from medbuilder.protocol.tools import Workspace
from medbuilder.protocol.tools.run import run_script
from medbuilder.settings import Settings

sys.path.insert(0, str(Path(__file__).parent))
from template_data import _br35h_dir, br35h_index  # noqa: E402

PER_CLASS = 6


@pytest.fixture()
def setup(tmp_path):
    index = br35h_index(tmp_path / "index", per_class=PER_CLASS)
    workspace = tmp_path / "ws"
    fill_template("diagnosis", workspace, {"index_dir": str(index), "image_size": [32, 32], "epochs": 1,
                                           "batch_size": 4, "num_threads": 1})
    return workspace, index, Settings(cache_dir=tmp_path / "store"), _br35h_dir()


def set_config(workspace: Path, **values) -> None:
    cfg = json.loads((workspace / "config.json").read_text())
    (workspace / "config.json").write_text(json.dumps({**cfg, **values}))


def chain_outputs(workspace: Path) -> tuple[dict, dict]:
    """The workspace's own chain (CacheDataset) and the store's items, through the template's build_loaders."""
    code = f"""
import json, sys, torch
sys.path.insert(0, {str(workspace)!r})
import dataloader, common
cfg = common.load_config({str(workspace / 'config.json')!r})
cfg["output_dir"] = {str(workspace)!r}
stored = dataloader.build_loaders(cfg)["train"].dataset
assert isinstance(stored, common.PreprocessedDataset), type(stored)
cfg["output_dir"] = {str(workspace / 'elsewhere')!r}
own = dataloader.build_loaders(cfg)["train"].dataset
out = {{"same": all(torch.equal(own[i]["image"], stored[i]["image"]) for i in range(len(own))),
       "keys": sorted(stored[0]) == sorted(own[0]), "n": len(own), "dtype": str(stored[0]["image"].dtype)}}
print("RESULT" + json.dumps(out))
"""
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=workspace, timeout=300)
    assert ran.returncode == 0, ran.stderr[-2000:]
    return json.loads(ran.stdout.split("RESULT", 1)[1]), ran.stdout


def test_entries_are_the_templates_own_tensors_and_are_made_once(setup):
    workspace, index, settings, root = setup
    first = offer(workspace, "diagnosis", index, [root], settings)
    assert (first.hits, first.made, first.skipped) == (0, 2 * PER_CLASS, 0), first.line()
    again = offer(workspace, "diagnosis", index, [root], settings)
    assert (again.hits, again.made) == (2 * PER_CLASS, 0)

    compared, output = chain_outputs(workspace)
    assert compared["same"] and compared["keys"] and compared["dtype"] == "torch.float32", compared
    assert "images read from medbuilder's store" in output

    set_config(workspace, image_size=[40, 40])
    resized = offer(workspace, "diagnosis", index, [root], settings)
    assert resized.made == 2 * PER_CLASS
    store = PreprocessStore(settings.resolve_cache_dir(), 1 << 30)
    assert sorted(c.what["config"]["image_size"] for c in store.summary()) == [[32, 32], [40, 40]]


def test_edited_code_or_a_changed_configuration_gets_no_entries(setup):
    workspace, index, settings, root = setup
    offer(workspace, "diagnosis", index, [root], settings)
    set_config(workspace, image_size=[48, 48])  # changed after the manifest was written, as a script could
    ws = Workspace.create(workspace, [root, index, settings.resolve_cache_dir()])
    ran = run_script(ws, "python dataloader.py --config config.json")
    assert ran.exit_code == 0 and "made for other values of ['image_size']" in ran.output, ran.output[-1500:]

    with (workspace / "dataloader.py").open("a") as handle:
        handle.write("\n# edited\n")
    refused = offer(workspace, "diagnosis", index, [root], settings)
    assert "dataloader.py" in refused.reason and not (workspace / MANIFEST).exists()


def test_a_record_outside_the_dataset_or_through_a_link_is_never_read(setup, tmp_path):
    workspace, index, settings, root = setup
    secret = tmp_path / "host-secret.jpg"
    secret.write_bytes(next(root.glob("yes/*.jpg")).read_bytes())
    dataset = tmp_path / "dataset"
    (dataset / "yes").mkdir(parents=True)
    (dataset / "yes" / "link.jpg").symlink_to(secret)
    train = json.loads((index / "train.json").read_text())
    train += [{"image": str(secret), "label": "yes"}, {"image": str(dataset / "yes" / "link.jpg"), "label": "yes"}]
    (index / "train.json").write_text(json.dumps(train))
    done = offer(workspace, "diagnosis", index, [root, dataset], settings)
    assert done.skipped == 2 and done.made == 2 * PER_CLASS
    entries = json.loads((workspace / MANIFEST).read_text())["entries"]["base"]
    assert str(secret) not in entries and not any("link.jpg" in key for key in entries)


def test_an_index_file_that_is_a_link_is_not_followed(setup, tmp_path):
    workspace, index, settings, root = setup
    elsewhere = tmp_path / "host-records.json"
    elsewhere.write_text((index / "train.json").read_text())
    (index / "train.json").unlink()
    (index / "train.json").symlink_to(elsewhere)
    refused = offer(workspace, "diagnosis", index, [root], settings)
    assert "cannot be read" in refused.reason and "link" in refused.reason and not (workspace / MANIFEST).exists()


def test_scripts_read_the_store_and_cannot_write_it(setup):
    workspace, index, settings, root = setup
    from medbuilder.cache.keys import dataset_part

    offer(workspace, "diagnosis", index, [root], settings)
    store = settings.resolve_cache_dir() / dataset_part(root)  # what the roles mount: this dataset's part only
    ws = Workspace.create(workspace, [root, index, store])
    ran = run_script(ws, "python dataloader.py --config config.json")
    assert ran.exit_code == 0 and re.search(r"(\d+) of \1 train images read from medbuilder's store", ran.output), \
        ran.output[-1500:]
    entry = next(store.glob("*/??/*.npy"))
    script = workspace / "poison.py"
    script.write_text(f"import numpy as np\nnp.save({str(entry)!r}, np.zeros((1, 32, 32), np.float32))\n")
    poisoned = run_script(ws, "python poison.py")
    assert poisoned.exit_code != 0 and "Read-only file system" in poisoned.output
    assert np.load(entry).any()


def test_the_store_keeps_its_limit_and_spares_what_a_build_is_about_to_read(tmp_path):
    store = PreprocessStore(tmp_path / "store", max_bytes=3 * 4096 + 3 * 200)
    paths = [store.put("dataset/chain", f"{i:064x}", np.full((1, 32, 32), i, np.float32)) for i in range(6)]
    for age, path in enumerate(paths):
        os.utime(path, (1000 + age, 1000 + age))
    store.evict(keep={paths[0]})
    left = sorted(p for p in paths if p.exists())
    assert paths[0] in left and len(left) == 3 and store.size() <= store.max_bytes
    assert left == sorted([paths[0], paths[4], paths[5]])  # the oldest others went first


def test_concurrent_builds_fill_and_share_one_store(setup, tmp_path):
    workspace, index, settings, root = setup
    other = tmp_path / "ws2"
    fill_template("diagnosis", other, json.loads((workspace / "config.json").read_text()))
    code = ("import sys; from pathlib import Path; from medbuilder.cache import offer; "
            "from medbuilder.settings import Settings; "
            f"o = offer(Path(sys.argv[1]), 'diagnosis', Path({str(index)!r}), [Path({str(root)!r})], "
            f"Settings(cache_dir=Path({str(settings.cache_dir)!r}))); print(o.hits + o.made, o.skipped)")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(ws)], stdout=subprocess.PIPE, text=True)
             for ws in (workspace, other)]
    outputs = [p.communicate(timeout=300)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs) and outputs == [[str(2 * PER_CLASS), "0"]] * 2
    for ws in (workspace, other):
        for entry in json.loads((ws / MANIFEST).read_text())["entries"]["base"].values():
            assert torch.from_numpy(np.load(entry)).shape == (1, 32, 32)


def test_cache_list_and_clear(setup, monkeypatch):
    from medbuilder.cli import app
    from medbuilder.settings import get_settings

    workspace, index, settings, root = setup
    offer(workspace, "diagnosis", index, [root], settings)
    monkeypatch.setenv("MEDBUILDER_CACHE_DIR", str(settings.cache_dir))
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        listed = runner.invoke(app, ["cache", "list"])
        assert listed.exit_code == 0 and f"{2 * PER_CLASS} images" in listed.output and "[32, 32]" in listed.output
        shown = listed.output.splitlines()[1].split()[0]  # <dataset>/<key> as the list shows it
        assert "removed 0" in runner.invoke(app, ["cache", "clear", "ffffffff/ffff"]).output
        cleared = runner.invoke(app, ["cache", "clear", shown])
        assert cleared.exit_code == 0 and f"removed {2 * PER_CLASS}" in cleared.output
        assert "0 images" in runner.invoke(app, ["cache", "list"]).output
    finally:
        get_settings.cache_clear()


def test_host_side_inference_reads_what_the_build_stored(setup, tmp_path):
    from medbuilder.cache.lookup import stored_images
    from medbuilder.review.trusted_code import trusted_predict

    workspace, index, settings, root = setup
    offer(workspace, "diagnosis", index, [root], settings)
    template = trusted_predict("diagnosis", workspace, tmp_path / "trusted")
    cfg = json.loads((workspace / "config.json").read_text())
    predictor = template["Predictor"](cfg, torch.nn.Identity())
    tests = [r["image"] for r in json.loads((index / "test.json").read_text())]
    outside = str(tmp_path / "not-stored.jpg")
    Path(outside).write_bytes(Path(tests[0]).read_bytes()[:-10])
    found = stored_images(predictor, [*tests, outside], settings)
    assert sorted(found) == sorted(tests)
    assert all(torch.equal(found[p], predictor.prepare(p)) for p in tests)


def test_predict_reads_the_store_and_gives_the_same_predictions(setup, tmp_path):
    from medbuilder.delivery.predict import predict_with_store
    from medbuilder.review.trusted_code import trusted_predict

    workspace, index, settings, root = setup
    offer(workspace, "diagnosis", index, [root], settings)
    template = trusted_predict("diagnosis", workspace, tmp_path / "trusted")
    cfg = json.loads((workspace / "config.json").read_text())
    torch.manual_seed(0)
    predictor = template["Predictor"](cfg, template["build_model"](cfg))
    files = [r["image"] for r in json.loads((index / "test.json").read_text())]
    unstored = str(tmp_path / "copy.jpg")
    Path(unstored).write_bytes(Path(files[0]).read_bytes() + b"\0")  # other bytes: not in the store
    from medbuilder.cache.lookup import stored_images

    assert len(stored_images(predictor, [*files, unstored], settings)) == len(files)
    assert predict_with_store(predictor, [*files, unstored], settings) == predictor.predict([*files, unstored])


@pytest.fixture()
def stored_predictor(setup, tmp_path, monkeypatch):
    """(a predictor of the workspace's configuration, the setup): the build's images stored, the store in use
    by host-side code (settings from the environment)."""
    from medbuilder.review.trusted_code import trusted_predict
    from medbuilder.settings import get_settings

    workspace, index, settings, root = setup
    offer(workspace, "diagnosis", index, [root], settings)
    monkeypatch.setenv("MEDBUILDER_CACHE_DIR", str(settings.cache_dir))
    get_settings.cache_clear()
    template = trusted_predict("diagnosis", workspace, tmp_path / "trusted")
    yield template["Predictor"](json.loads((workspace / "config.json").read_text()), torch.nn.Identity()), setup
    get_settings.cache_clear()


def test_blanked_counterfactuals_join_the_stored_images_and_are_read_back(stored_predictor, tmp_path, monkeypatch):
    from medbuilder.review import roi_blanking

    predictor, (_, index, settings, root) = stored_predictor
    monkeypatch.setattr(roi_blanking, "EXAMPLE_COUNTERFACTUALS", 2)
    records = [*json.loads((index / "train.json").read_text()), *json.loads((index / "test.json").read_text())]
    unstored = tmp_path / "copy.jpg"
    unstored.write_bytes(Path(records[0]["image"]).read_bytes() + b"\0")  # other bytes: no entry of the build's
    records.append({"image": str(unstored), "label": records[0]["label"]})
    first, _ = roi_blanking.blank_outside_roi(predictor, records, "head", tmp_path / "round-0")
    variants = [c for c in PreprocessStore(settings.cache_dir, 1 << 30).summary()
                if c.what.get("kind", "").startswith("variant: blanked outside the head region")]
    assert len(variants) == 1 and variants[0].entries == len(first) - 1  # the unstored copy is not kept
    assert variants[0].what["dataset"] == str(Path(root).resolve())  # listed with its dataset
    for entry in (settings.cache_dir / variants[0].key).glob("??/*.npy"):  # what is read back is what is stored
        np.save(entry, np.full((1, 32, 32), 7.0, dtype=np.float32))
    second, _ = roi_blanking.blank_outside_roi(predictor, records, "head", tmp_path / "round-1")
    assert [p for p, _ in first] == [p for p, _ in second]
    changed = [p for (p, a), (_, b) in zip(first, second) if not torch.equal(torch.as_tensor(a), b)]
    made_again = {str(r["image"]) for r in records[:2]} | {str(unstored)}  # the examples, and the unstored copy
    assert changed == [p for p, _ in first if p not in made_again] and changed


def test_acquisition_variants_join_the_stored_images_and_are_read_back(stored_predictor, tmp_path, monkeypatch):
    from medbuilder.review import metadata_reliance

    predictor, (_, index, settings, _) = stored_predictor
    monkeypatch.setattr(metadata_reliance, "KEPT_EXAMPLES", 1)
    records = json.loads((index / "train.json").read_text())
    images, labels = [r["image"] for r in records], [r["label"] for r in records]
    typical = {"positive": (300, 240), "negative": (256, 256)}
    made, files = metadata_reliance._prepared_variants(predictor, images, labels, "yes", typical, tmp_path / "a")
    again, files_again = metadata_reliance._prepared_variants(predictor, images, labels, "yes", typical, tmp_path / "b")
    assert all(len(made[kind]) == len(images) and len(files[kind]) == 1 for kind in made)  # one example file
    assert all(len(files_again[kind]) == 1 for kind in made)  # only the example is made again
    for kind in made:  # prepared in memory as from the PNG: the example's file, and a copy written here
        assert torch.equal(torch.as_tensor(made[kind][0][1]), predictor.prepare(files[kind][0][1]))
        for j in (1, len(images) - 1):
            other = typical["negative" if labels[j] == "yes" else "positive"]
            png = tmp_path / f"{kind}-{j}.png"
            metadata_reliance._changed_pictures(images[j], other)[kind].save(png, compress_level=1)
            assert torch.equal(torch.as_tensor(made[kind][j][1]), predictor.prepare(png)), (kind, j)
    for kind in made:
        assert all(a == c and torch.equal(torch.as_tensor(b), d) for (a, b), (c, d) in zip(made[kind], again[kind]))
    kinds = {c.what.get("kind", "").split(" (code")[0] for c in PreprocessStore(settings.cache_dir, 1 << 30).summary()}
    assert {"variant: re-padded to the file shape 300 x 240", "variant: resampled to the file shape 256 x 256"} <= kinds
