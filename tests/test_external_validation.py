"""External validation: a delivered Br35H model on the held-out Br35H scans, re-laid as another release.

Real pieces: a tiny diagnosis model trained for one epoch on real Br35H images (delivery_fixtures), its
bundle, the `br35h-heldout` recipe (whole duplicate groups kept out of `br35h`, laid out as labels.csv +
images/ with other label names), the offline Data Engineer's layout inference and the shared indexer in
the sandbox. A second, user-written set with copies of the run's own images checks that they are set aside.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
import delivery_fixtures  # noqa: E402
from conftest import REPO  # noqa: E402

MAP = {"tumour": "yes", "normal": "no"}


@pytest.fixture(scope="module")
def delivered(tmp_path_factory):
    from medbuilder.delivery import export_bundle, render_card
    from medbuilder.protocol.artifacts import RunRecord
    from medbuilder.protocol.datasets import prepare

    root = tmp_path_factory.mktemp("external")
    run, index = delivery_fixtures.make_run(root, "diagnosis")
    export_bundle(run.root, 0, render_card(run.root, 0))
    run.write("run.json", RunRecord(run_id=run.run_id, request=delivery_fixtures.REQUESTS["diagnosis"],
                                    core="offline", approve="auto", status="delivered"))
    prepare("br35h-heldout", root / "data" / "br35h-heldout", limit=10, echo=lambda _: None)
    return root, run, index


@pytest.fixture
def settings_for(delivered, monkeypatch):
    root = delivered[0]
    monkeypatch.setenv("MEDBUILDER_DATA_DIR", str(root / "data"))

    def cards(extra: dict | None = None) -> Path:
        folder = root / "cards"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(REPO / "datacards", folder)
        if extra:
            (folder / f"{extra['name']}.yaml").write_text(yaml.safe_dump(extra, sort_keys=False))
        monkeypatch.setenv("MEDBUILDER_DATACARDS_DIR", str(folder))
        return folder

    return cards


def test_heldout_set_is_disjoint_from_br35h():
    from medbuilder.protocol.datasets import br35h, br35h_heldout

    held = {Path(p) for p in br35h_heldout.sources()}
    kept = set(br35h.sources())
    assert len(held) == 300 and not held & kept and len(held | kept) == 3000
    assert {p.parent.name for p in held} == {"yes", "no"}


def test_external_report_on_the_heldout_set(delivered, settings_for):
    from sklearn.metrics import roc_auc_score

    from medbuilder.review.external import evaluate_external

    _, run, _ = delivered
    settings_for()
    result = evaluate_external(run, "br35h-heldout", MAP)
    folder = run.root / "external" / "br35h-heldout"
    assert result["n"] == 20 and result["per_class"] == {"no": 10, "yes": 10} and result["set_aside"] == []
    assert result["label_map"] == {"normal": "no", "tumour": "yes"}
    assert any("labels.csv" in line for line in result["layout"])  # inferred from the files, not given
    # medbuilder's figure, recomputed here from what it wrote: the cases' labels and the bundle's scores
    cases = json.loads((folder / "index" / "test.json").read_text())
    predictions = {p["image"]: p for p in json.loads((folder / "model" / "predictions.json").read_text())}
    truth = [r["label"] == "yes" for r in cases]
    scores = [predictions[r["image"]]["probabilities"]["yes"] for r in cases]
    assert result["value"] == pytest.approx(roc_auc_score(truth, scores), abs=1e-6)
    assert {r["external_label"] for r in cases} == {"normal", "tumour"}
    assert result["unit"] in ("image", "duplicate group") and result["n_units"] >= 2
    assert result["ci95"] is None or result["ci95"][0] <= result["value"] <= result["ci95"][1]
    assert result["internal"]["value"] is not None
    assert (folder / "report" / "interpretability.md").is_file()
    assert set(result["interpretability"]["measures"]) >= {"attribution_share", "counterfactual_flip_rate"}
    assert result["interpretability"]["calibration_ece"] is not None
    report = (folder / "external_validation.md").read_text()
    assert "held out from the source of br35h" in report and "internal test split" in report
    for card in (run.root / "model_card.md", run.root / "bundle" / "docs" / "README.md"):
        text = card.read_text()
        assert "## External validation" in text and "on br35h-heldout:" in text


def test_label_names_that_differ_need_a_map(delivered, settings_for):
    from medbuilder.review.external import evaluate_external
    from medbuilder.review.external_data import ExternalDataError

    _, run, _ = delivered
    settings_for()
    with pytest.raises(ExternalDataError, match="--label-map normal=no --label-map tumour=yes"):
        evaluate_external(run, "br35h-heldout", {})
    with pytest.raises(ExternalDataError, match="are not classes of the model"):
        evaluate_external(run, "br35h-heldout", {"tumour": "maybe", "normal": "no"})
    with pytest.raises(ExternalDataError, match="the dataset the model was built on"):
        evaluate_external(run, "br35h", {})


def test_copies_of_the_runs_own_images_are_set_aside(delivered, settings_for):
    from medbuilder.review.external import evaluate_external

    root, run, index = delivered
    site = root / "data" / "other-site"
    held = root / "data" / "br35h-heldout"
    rows = [line.split(",") for line in (held / "labels.csv").read_text().splitlines()[1:]]
    for i, (image, finding) in enumerate(rows[:8]):
        (site / MAP[finding]).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(held / image, site / MAP[finding] / f"h{i}.jpg")
    trained = [r for r in index.train if r.label == "yes"][:2]
    shutil.copyfile(trained[0].image, site / "yes" / "same-bytes.jpg")
    with Image.open(trained[1].image) as im:  # a mirrored, re-encoded copy
        im.convert("RGB").transpose(Image.FLIP_LEFT_RIGHT).save(site / "yes" / "mirrored.jpg", quality=90)
    settings_for({"name": "other-site", "title": "Brain MRI slices from another folder", "path": str(site),
                  "description": "Axial brain MRI slices in one folder per class (no, yes), written by a test.",
                  "tasks": ["diagnosis"], "modality": "MRI", "dimension": "2D", "anatomy": "brain",
                  "label_names": ["no", "yes"], "file_formats": ["jpg"], "licence": "test data",
                  "provenance": "real", "source": "copies of Br35H files", "use": "validation"})
    result = evaluate_external(run, "other-site")
    aside = {Path(a["image"]).name: a["why"] for a in result["set_aside"]}
    assert set(aside) == {"same-bytes.jpg", "mirrored.jpg"}, aside
    assert all("a copy of the run's own image" in why for why in aside.values())
    assert result["n"] == 8 and result["n_indexed"] == 10


def test_validation_cards_are_never_chosen_to_train():
    from medbuilder.agents.roles.task_manager import _plan
    from medbuilder.protocol.registry import Registry

    cards = list(Registry(REPO / "datacards").cards().values())
    plan = _plan("Classify brain MRI slices as tumour or no tumour", cards, None)
    assert plan.dataset == "br35h"
    held = next(c for c in plan.candidates if c.name == "br35h-heldout")
    assert not held.fits
    named = _plan("Classify brain MRI slices as tumour or no tumour", cards, "br35h-heldout")
    assert named.status == "no_fit" and any("held out for external validation" in r for r in named.reasons)


def test_cli_names_the_problem(delivered, settings_for):
    from typer.testing import CliRunner

    from medbuilder.cli import app

    _, run, _ = delivered
    settings_for()
    out = CliRunner().invoke(app, ["evaluate", str(run.root), "--dataset", "no-such-card"])
    assert out.exit_code == 2 and "unknown dataset 'no-such-card'" in out.output
    out = CliRunner().invoke(app, ["evaluate", str(run.root), "--dataset", "br35h-heldout", "-m", "tumour"])
    assert out.exit_code == 2 and "is not EXTERNAL=MODEL" in out.output
    assert "Traceback" not in out.output
