"""Interpretability report of a trained diagnosis round: saliency samples, calibration,
subgroups and the shortcut measures, checked against the clinician's objective.

``interpret_round`` writes into ``out_dir``: ``interpretability.md`` (the review gate's
page), ``interpretability.json`` (every number), ``saliency-<category>.png`` (image,
GradCAM and occlusion for the most confident true positives, false positives and
false negatives), ``reliability.png`` and, for a roi confounder, the first few blanked
counterfactual images in ``counterfactuals/`` (every test image is blanked and measured, in
memory). Inside a Prefect run the markdown and the measures table are also published as
artifacts.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from medbuilder.review import inference_clock, panels, saliency, shortcuts  # noqa: E402
from medbuilder.review.trusted_code import TRUSTED_CODE, trusted_predict  # noqa: E402


# ----------------------------------------------------------------------------- inputs


def load_predictor(workspace: Path, source: Path):
    """The Predictor of ``source`` (the workspace itself or a round snapshot with config.json,
    checkpoints/model.pt and predictions.json), built by medbuilder's own template code once the
    workspace's code is checked to be that code (EditedCodeError otherwise; nothing of it runs here)."""
    namespace = trusted_predict("diagnosis", Path(workspace), Path(workspace).parent / TRUSTED_CODE / "diagnosis")
    predictor = namespace["load"](source, device="cpu")
    inference_clock.attach(predictor.network)
    return predictor


def predictions_file(source: Path) -> Path:
    """predictions.json of a snapshot (beside config.json) or of a workspace (under its output_dir)."""
    source = Path(source)
    out = json.loads((source / "config.json").read_text()).get("output_dir") or "."
    for candidate in (source / out / "predictions.json", source / "predictions.json"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no predictions.json in {source}: train first (python train.py --config config.json)")


def pick_samples(records: list[dict], positive: str | None, max_images: int) -> dict[str, list[dict]]:
    """Up to max_images each of the most confident TP, FP and FN (binary); correct and wrong otherwise."""
    if positive is None:
        top = lambda r: max(r["probabilities"].values())  # noqa: E731
        right = [r for r in records if r["prediction"] == r["label"]]
        wrong = [r for r in records if r["prediction"] != r["label"]]
        return {"correct": sorted(right, key=top, reverse=True)[:max_images],
                "wrong": sorted(wrong, key=top, reverse=True)[:max_images]}

    def cases(label_positive: bool, said_positive: bool) -> list[dict]:
        return [r for r in records if (r["label"] == positive) == label_positive
                and (r["prediction"] == positive) == said_positive]

    return {"true-positive": sorted(cases(True, True), key=lambda r: -r["score"])[:max_images],
            "false-positive": sorted(cases(False, True), key=lambda r: -r["score"])[:max_images],
            "false-negative": sorted(cases(True, False), key=lambda r: r["score"])[:max_images]}


# ----------------------------------------------------------------------------- figures


def _display(image2d: np.ndarray) -> np.ndarray:
    """MONAI loads 2D pictures with x first: transpose so they look as in an image viewer."""
    return image2d.T


def saliency_grid(predictor, cases: list[dict], title: str, path: Path) -> Path | None:
    """One row per case: the prepared image, GradCAM over it, occlusion sensitivity over it."""
    if not cases:
        return None
    images = shortcuts.prepare_all(predictor, [r["image"] for r in cases])
    cams = saliency.gradcam(predictor, images)
    rows = []
    for x, cam in zip(images, cams):
        grey = _display(saliency.as_numpy_2d(x))
        occ = saliency.occlusion(predictor, x).numpy()
        rows.append([panels.panel(grey), panels.panel(grey, _display(cam.numpy())), panels.panel(grey, _display(occ))])
    labels = [f"{r['label']} -> {r['prediction']}\nscore {r.get('score') or 0:.2f}" for r in cases]
    return panels.grid_png(rows, labels, ["image", "GradCAM", "occlusion"], title, path)


VIEWER_CASES = 40  # per category: the case viewer's true positives, false positives and false negatives


def save_cases(predictor, samples: dict[str, list[dict]], folder: Path) -> list[dict]:
    """For the dashboard's case viewer: each case's prepared image and GradCAM map (cases/<id>.npz, float16,
    as displayed) and an index (cases/index.json) with the file's name, truth, answer and score."""
    folder.mkdir(parents=True, exist_ok=True)
    index = []
    for category, cases in samples.items():
        if not cases:
            continue
        images = shortcuts.prepare_all(predictor, [r["image"] for r in cases])
        cams = saliency.gradcam(predictor, images)
        for i, (r, x, cam) in enumerate(zip(cases, images, cams)):
            case_id = f"{category}-{i:03d}"
            np.savez_compressed(folder / f"{case_id}.npz", image=_display(saliency.as_numpy_2d(x)).astype(np.float16),
                                gradcam=_display(cam.numpy()).astype(np.float16))
            index.append({"id": case_id, "category": category, "name": Path(r["image"]).name,
                          "label": r["label"], "prediction": r["prediction"], "score": r.get("score")})
    (folder / "index.json").write_text(json.dumps(index, indent=1))
    return index


def reliability_png(calib: dict, path: Path) -> Path | None:
    rows = [b for b in calib["bins"] if b["n"]]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(3.8, 3.6))
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    ax.plot([b["mean_p"] for b in rows], [b["observed"] for b in rows], "o-", c="tab:blue")
    for b in rows:
        ax.annotate(str(b["n"]), (b["mean_p"], b["observed"]), fontsize=6, xytext=(3, -8), textcoords="offset points")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="predicted probability (bin mean)", ylabel="observed share",
           title=f"Reliability (ECE {calib['ece']:.3f})")
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- objective and report


def objective_status(objective: dict | None, measures: dict) -> dict | None:
    """The objective's measure against max_reliance: met, not met, or not measurable.
    subgroup_gap is compared by its size (|gap|): a gap either way is reliance."""
    if not objective:
        return None
    name, limit = objective.get("measure"), objective.get("max_reliance")
    value = (measures.get(name) or {}).get("value")
    if value is None or limit is None:
        reason = (measures.get(name) or {}).get("reason") or f"unknown measure {name!r}"
        return {"measure": name, "value": None, "max_reliance": limit, "status": "not measurable", "reason": reason}
    compared = abs(value) if name == "subgroup_gap" else value
    return {"measure": name, "value": value, "max_reliance": limit, "compared": compared,
            "status": "met" if compared <= float(limit) else "not met", "confounder": objective.get("confounder")}


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def measure_rows(measures: dict) -> list[dict]:
    rows = []
    for name in shortcuts.MEASURES:
        m = measures[name]
        extra = {k: v for k, v in m.items() if k not in ("value", "n", "reason", "files") and v is not None}
        rows.append({"measure": name, "value": _fmt(m["value"]), "n": m["n"],
                     "details": ", ".join(f"{k} {_fmt(v)}" for k, v in extra.items()) or (m["reason"] or ""),
                     "definition": shortcuts.DEFINITIONS[name]})
    return rows


def render_markdown(report: dict) -> str:
    lines = ["# Interpretability", "", f"Test cases: {report['n_test']}; model `{report['model']}`, "
             f"positive class `{report['positive_label']}`. Measures: docs/shortcut_measures.md.", ""]
    status = report["objective_status"]
    lines += ["## Objective", ""]
    if status is None:
        lines += ["No objective set.", ""]
    else:
        lines += [f"**{status['status']}**: {status['measure']} = {_fmt(status['value'])} "
                  f"(at most {_fmt(status['max_reliance'], 2)})"
                  + (f"; {status['reason']}" if status.get("reason") else ""), ""]
    lines += ["## Saliency samples", "",
              "Each row: the image as the model sees it, GradCAM (last conv layer) and occlusion sensitivity; "
              "red = more important.", ""]
    for category, fig in report["figures"]["saliency"].items():
        n = len(report["samples"][category])
        lines += [f"### {category} ({n})", "", f"![{category}]({fig})" if fig else "none in the test split", ""]
    calib = report["calibration"]
    lines += ["## Calibration", "", f"Expected calibration error (10 bins, {calib['kind']}): **{_fmt(calib['ece'])}**",
              "", f"![reliability]({report['figures']['reliability']})" if report["figures"]["reliability"] else "", ""]
    lines += ["## Subgroups", ""]
    if report["subgroups"]:
        lines += ["| group | n | accuracy | AUROC |", "| --- | --- | --- | --- |"]
        lines += [f"| {g} | {m['n']} | {_fmt(m['accuracy'])} | {_fmt(m['auroc'])} |"
                  for g, m in report["subgroups"].items()]
    else:
        lines += ["The test records carry no `group`."]
    lines += ["", "## Shortcut measures", "", "| measure | value | n | details | definition |",
              "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['measure']} | {r['value']} | {r['n']} | {r['details']} | {r['definition']} |"
              for r in measure_rows(report["measures"])]
    lines += ["", f"_Computed in {report['seconds']:.1f} s._", ""]
    return "\n".join(lines)


def artifact_key(out_dir: Path) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    slug = re.sub(r"[^a-z0-9]+", "-", Path(out_dir).name.lower()).strip("-")
    return f"interpretability-{slug}" if slug else "interpretability"


def publish_artifacts(markdown: str, rows: list[dict], key: str) -> bool:
    """Markdown and measures-table artifacts when inside a Prefect flow or task run; else nothing."""
    if "prefect" not in sys.modules:  # no run without prefect loaded; importing it costs seconds
        return False
    try:
        from prefect.context import get_run_context

        if get_run_context() is None:
            return False
    except Exception:  # MissingContextError outside a run
        return False
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    create_markdown_artifact(markdown=markdown, key=key, description="Interpretability and shortcut measures")
    create_table_artifact(table=rows, key=f"{key}-measures", description="Shortcut measures on the test split")
    return True


# ----------------------------------------------------------------------------- entry point


def interpret_round(workspace: Path, index_dir: Path, out_dir: Path, objective: dict | None = None,
                    roi: str | None = None, max_images: int = 6, snapshot: Path | None = None,
                    predictor=None) -> dict:
    """Write the interpretability report of a trained diagnosis round to out_dir and return its numbers.

    workspace: the template workspace (its predict.py builds the model); snapshot: a round folder
    (rounds/<k>/) to read config, checkpoint and predictions.json from instead of the workspace.
    index_dir: the data index (its test.json gives confounder_mask and counterfactual paths).
    roi: a region-of-interest confounder (e.g. "head"): measures look outside that region.
    predictor: the round's load_predictor(workspace, source), when the caller has it (its prepared images are
    shared with the caller's other measures).
    """
    started = time.time()
    workspace, out_dir = Path(workspace), Path(out_dir)
    source = Path(snapshot) if snapshot else workspace
    out_dir.mkdir(parents=True, exist_ok=True)
    predictor = predictor or load_predictor(workspace, source)
    positive = predictor.names[predictor.positive] if predictor.positive is not None else None
    records = shortcuts.join_records(json.loads(predictions_file(source).read_text()), Path(index_dir))
    torch.manual_seed(0)

    measures = shortcuts.all_measures(predictor, records, positive, roi, out_dir)
    calib = shortcuts.calibration(records, positive)
    samples = pick_samples(records, positive, max_images)
    figures = {"saliency": {}, "reliability": None}
    for category, cases in samples.items():
        fig = saliency_grid(predictor, cases, f"{category} (most confident)", out_dir / f"saliency-{category}.png")
        figures["saliency"][category] = fig.name if fig else None
    viewer = pick_samples(records, positive, VIEWER_CASES)
    cases = save_cases(predictor, viewer, out_dir / "cases")
    fig = reliability_png(calib, out_dir / "reliability.png")
    figures["reliability"] = fig.name if fig else None

    report = {"n_test": len(records), "positive_label": positive, "model": predictor.cfg.get("model"),
              "roi": roi, "objective": objective, "measures": measures,
              "objective_status": objective_status(objective, measures), "calibration": calib,
              "subgroups": shortcuts.subgroup_metrics(records, positive), "figures": figures,
              "samples": {k: [r["image"] for r in v] for k, v in samples.items()}, "viewer_cases": len(cases)}
    report["seconds"] = round(time.time() - started, 2)
    markdown = render_markdown(report)
    (out_dir / "interpretability.md").write_text(markdown)
    (out_dir / "interpretability.json").write_text(json.dumps(report, indent=2))
    report["published"] = publish_artifacts(markdown, measure_rows(measures), artifact_key(out_dir))
    return report
