"""External validation of a delivered model: ``medbuilder evaluate RUN --dataset NAME``.

The delivered bundle (loaded as ``medbuilder predict`` loads it) predicts every image of another
datacard's set (``external_data.py``: indexed as any dataset, labels mapped, copies of the run's own
images set aside). medbuilder computes the figures itself with the template's metric functions: AUROC,
accuracy, sensitivity and specificity with intervals over independent units (``clustered.py``), the same
at the delivered operating point, calibration, and the shortcut measures and saliency of the
interpretability report. Everything goes to ``runs/<id>/external/<name>/``::

    external_validation.json   every figure, the label map, the images set aside and why
    external_validation.md     the report (the model card's "External validation" section links it)
    index/test.json            the cases, with the model's label names
    model/                     the delivered round's config and checkpoint, and predictions.json
    report/                    the interpretability report on these cases (saliency, calibration, measures)
    indexer/                   the shared indexer's run on the set's folder

The model card (``model_card.md`` and the bundle's ``docs/README.md``) is written again with the section.
"""

from __future__ import annotations

import json
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from medbuilder.protocol.run_folder import RunFolder
from medbuilder.review.clustered import cluster_bootstrap, independent_units
from medbuilder.review.external_data import (ExternalDataError, ExternalSet, check_card, copies_of_run_images,
                                             index_external, resolve_label_map, run_images)
from medbuilder.review.external_report import render_report

EXTERNAL = "external"
REPORT = "external_validation"


def _delivered_round(run: RunFolder) -> tuple[int, dict, dict]:
    """(round, its metrics.json, its config.json) of the run's bundle."""
    from medbuilder.delivery.predict import bundle_dir

    meta = json.loads((bundle_dir(run.root) / "configs" / "metadata.json").read_text())
    round_k = int(meta["medbuilder"]["round"])
    snapshot = run.round_dir(round_k)
    return round_k, json.loads((snapshot / "metrics.json").read_text()), json.loads((snapshot / "config.json").read_text())


def external_set(run: RunFolder, dataset: str, given_map: dict[str, str], settings) -> ExternalSet:
    from medbuilder.agents.layout.labels import LabelMatcher
    from medbuilder.protocol.manifest import dataset_root
    from medbuilder.protocol.registry import Registry
    from medbuilder.review.verified_metric import fixed_test_split

    try:
        card = Registry(settings.datacards_dir).get(dataset)
    except KeyError as err:
        raise ExternalDataError(str(err.args[0])) from None
    own = run.datacard().model_dump(mode="json")
    task = run.plan().task
    check_card(card, task, own["dimension"], own["name"])
    root = settings.resolve_data_path(card.path)
    if not root.is_dir():
        how = f"`medbuilder data prepare {card.prepare}`" if card.prepare else "set the datacard's path"
        raise ExternalDataError(f"the folder of {card.name}, {root}, does not exist: {how}")
    _, label_dict = fixed_test_split(run)
    model_names = sorted(label_dict, key=label_dict.get)
    normals = (LabelMatcher(card.label_names).normal, LabelMatcher(model_names).normal)
    mapping = resolve_label_map(card.label_names, model_names, given_map, card.name, normals)
    records, layout = index_external(card, root, task, run.root / EXTERNAL / card.name / "indexer", settings)
    for r in records:
        r["external_label"], r["label"] = r["label"], mapping[r["label"]]
    copies, _ = copies_of_run_images([r["image"] for r in records], run_images(run, dataset_root(run)))
    set_aside = [{"image": r["image"], "why": f"a copy of the run's own image {copies[r['image']]}"}
                 for r in records if r["image"] in copies]
    kept = [r for r in records if r["image"] not in copies]
    if not kept:
        raise ExternalDataError(f"all {len(records)} images of {card.name} copy images the model was built on: "
                                "external validation needs images it never saw")
    return ExternalSet(card, root, kept, mapping, layout.summary(), set_aside)


def predict_all(run: RunFolder, images: list[str]) -> tuple[list[dict], list[dict]]:
    """(the bundle's predictions, the images it could not read and why), one image at a time."""
    from medbuilder.delivery.predict import bundle_dir, load_bundle

    predictor = load_bundle(bundle_dir(run.root))
    predicted, unreadable = [], []
    for image in images:
        try:
            predicted.append({**predictor.predict([image])[0], "image": image})
        except ValueError as err:
            unreadable.append({"image": image, "why": str(err)})
    return predicted, unreadable


def _at_operating_point(records: list[dict], predictions: list[dict], positive: str, threshold: float,
                        units: np.ndarray, cfg: dict) -> dict:
    from medbuilder.review.operating_point import at_threshold
    from medbuilder.review.verified_metric import _boot

    y = np.array([r["label"] == positive for r in records])
    s = np.array([float(p["score"]) for p in predictions])
    counts = at_threshold(list(y), list(s), threshold)

    def rates(idx: np.ndarray) -> dict:
        called = s[idx] >= threshold
        pos, neg = y[idx], ~y[idx]
        return {"sensitivity": float(called[pos].mean()) if pos.any() else None,
                "specificity": float((~called[neg]).mean()) if neg.any() else None}

    intervals = cluster_bootstrap(rates, units, *_boot(cfg))
    return {**{k: counts[k] for k in ("threshold", "tp", "fn", "fp", "tn", "sensitivity", "specificity")},
            "sensitivity_ci95": intervals.get("sensitivity"), "specificity_ci95": intervals.get("specificity")}


def _snapshot(run: RunFolder, round_k: int, folder: Path, records: list[dict], predictions: list[dict]) -> Path:
    """model/: the delivered round's config and checkpoint with these predictions; index/test.json: the cases."""
    model = folder / "model"
    (model / "checkpoints").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run.round_dir(round_k) / "config.json", model / "config.json")
    shutil.copyfile(run.round_dir(round_k) / "checkpoints" / "model.pt", model / "checkpoints" / "model.pt")
    joined = [{**p, "label": r["label"]} for r, p in zip(records, predictions)]
    (model / "predictions.json").write_text(json.dumps(joined, indent=1))
    (folder / "index").mkdir(parents=True, exist_ok=True)
    (folder / "index" / "test.json").write_text(json.dumps(records, indent=1))
    return model


def _interpretability(run: RunFolder, folder: Path, model: Path) -> dict:
    from medbuilder.review.evaluate import objective_and_roi
    from medbuilder.review.interpret import interpret_round

    objective, roi = objective_and_roi(run)
    report = interpret_round(run.workspace, folder / "index", folder / "report", objective=objective, roi=roi,
                             snapshot=model)
    return {"measures": {name: m.get("value") for name, m in report["measures"].items()},
            "measure_reasons": {name: m.get("reason") for name, m in report["measures"].items() if m.get("reason")},
            "objective_status": report["objective_status"], "calibration_ece": report["calibration"].get("ece"),
            "report": f"{EXTERNAL}/{folder.name}/report/interpretability.md"}


def _figures_of(run: RunFolder, data: ExternalSet, records: list[dict], predictions: list[dict], internal: dict,
                cfg: dict) -> dict:
    """The report's figures: the metric and rates with intervals over units, the operating point, subgroups."""
    from medbuilder.review.subgroups import for_predictions
    from medbuilder.review.verified_metric import _diagnosis, _intervals, fixed_test_split

    _, label_dict = fixed_test_split(run)
    figures, statistic = _diagnosis(run, records, label_dict, predictions, cfg)
    positive = figures.get("positive_label")
    result = {"dataset": data.card.name, "title": data.card.title, "provenance": data.card.provenance,
              "held_out_from": data.card.held_out_from,
              "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "root": str(data.root), "layout": data.layout, "label_map": data.label_map,
              "n_indexed": len(data.records) + len(data.set_aside), "n": len(records),
              "per_class": {n: sum(r["label"] == n for r in records) for n in label_dict},
              **{k: figures.get(k) for k in ("value", "accuracy", "sensitivity", "specificity", "positive_label")},
              "metric": internal.get("metric"), **_intervals(records, statistic, cfg),
              "internal": {k: internal.get(k) for k in ("value", "ci95", "unit", "n_units", "units_note",
                                                         "sensitivity", "specificity", "n_test")}}
    threshold = predictions[0].get("threshold")  # the bundle's own: on calibrated scores when it has a temperature
    if positive and threshold is not None:
        _, units = independent_units(records)
        result["operating_point"] = _at_operating_point(records, predictions, positive, float(threshold), units, cfg)
    if positive:
        result["subgroups"] = for_predictions(records, predictions, positive, cfg)
    return result


def evaluate_external(run: RunFolder, dataset: str, label_map: dict[str, str] | None = None,
                      settings=None) -> dict:
    """Validate the run's delivered model on datacard `dataset`; write and return the report's figures (the model card
    is written again by the caller: ``medbuilder.stages.external``)."""
    from medbuilder.settings import get_settings

    started = time.time()
    settings = settings or get_settings()
    round_k, internal, cfg = _delivered_round(run)
    if internal.get("task") != "diagnosis":
        raise ExternalDataError(f"external validation covers diagnosis models; run {run.run_id} is a "
                                f"{internal.get('task')} model")
    folder = run.root / EXTERNAL / dataset
    for old in ("model", "index", "report"):
        shutil.rmtree(folder / old, ignore_errors=True)
    data = external_set(run, dataset, label_map or {}, settings)
    predictions, unreadable = predict_all(run, [r["image"] for r in data.records])
    readable = {p["image"] for p in predictions}
    records = [r for r in data.records if r["image"] in readable]
    if not records:
        raise ExternalDataError(f"the model could read none of the {len(data.records)} images of {dataset}: "
                                f"{unreadable[0]['why']}")
    result = {"run_id": run.run_id, "round": round_k, **_figures_of(run, data, records, predictions, internal, cfg),
              "set_aside": data.set_aside + unreadable}
    model = _snapshot(run, round_k, folder, records, predictions)
    result["interpretability"] = _interpretability(run, folder, model)
    result["seconds"] = round(time.time() - started, 1)
    run.write(f"{EXTERNAL}/{dataset}/{REPORT}.json", result)
    (folder / f"{REPORT}.md").write_text(render_report(result))
    return result


def external_reports(run_root: Path) -> list[dict]:
    """Every external_validation.json of the run, by dataset name."""
    found = []
    for file in sorted(Path(run_root).glob(f"{EXTERNAL}/*/{REPORT}.json")):
        try:
            found.append(json.loads(file.read_text()))
        except ValueError:
            continue
    return found
