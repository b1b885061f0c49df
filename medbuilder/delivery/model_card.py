"""The model card (``model_card.md``, and the bundle's ``docs/README.md``) of one training round.

Every figure on the card is read from the run folder: the request, the datacard, the
index report, ``rounds/<k>/metrics.json`` and ``config.json``, the gate decisions. The
limits are derived from those files (generated data, test-set size, interval width,
the datacard's confounders, task-specific caveats); nothing is invented.
``extra_sections`` lets a later stage (interpretability: shortcut measures) add
sections by title.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from medbuilder.delivery.card_checks import check_sections
from medbuilder.review.operating_point import wilson

METRIC_NAMES = {"auroc": "AUROC", "dice": "Dice (mean foreground, per case)", "bleu4": "BLEU-4 (corpus)"}
TASK_TEXT = {"diagnosis": "image classification (diagnosis)", "segmentation": "segmentation",
             "anomaly_detection": "unsupervised anomaly detection (autoencoder reconstruction error)",
             "report_generation": "report generation (image to text)"}
NETWORKS = {"anomaly_detection": "convolutional autoencoder with a dense bottleneck",
            "report_generation": "CNN image encoder + GRU word decoder"}
SMALL_TEST = 100
TRAINING_KEYS = ("epochs", "batch_size", "lr", "lr_schedule", "weight_decay", "image_size", "patch_size", "spacing",
                 "in_channels", "num_classes", "channels", "augment", "val_fraction", "max_train_items",
                 "max_test_items", "time_limit_s", "seed")


def _read(path: Path, default=None):
    return json.loads(path.read_text()) if path.is_file() else default


def _num(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _ci(ci) -> str:
    if not ci or any(v is None or (isinstance(v, float) and not math.isfinite(v)) for v in ci):
        return "95% CI not available"
    return f"95% CI {_num(float(ci[0]))} to {_num(float(ci[1]))}"


def _over(m: dict) -> str:
    """What the interval resamples: independent units where the index names them."""
    if m.get("units_note"):
        return f"{m.get('interval', 'percentile bootstrap')}: {m['units_note']}"
    return f"percentile bootstrap over the {m.get('n_test')} test case(s), each counted as independent"


def _proportion_ci(m: dict, key: str, successes: int, n: int) -> str:
    """A rate's interval: over independent units when medbuilder computed one, else Wilson per image."""
    if m.get(f"{key}_ci95"):
        return _ci(m[f"{key}_ci95"]) + f" ({successes}/{n}; bootstrap over {m.get('unit')}s)"
    return _ci(wilson(successes, n)) + f" (Wilson; {successes}/{n}, images counted as independent)"


def _table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c).replace("|", "/").replace("\n", " ") for c in row) + " |" for row in rows]
    return out


# ----------------------------------------------------------------------------- sections


def _metrics_section(m: dict) -> list[str]:
    name = METRIC_NAMES.get(m.get("metric"), m.get("metric"))
    lines = ["## Metrics (test set)", "",
             f"**{name}: {_num(m.get('value'))}** ({_ci(m.get('ci95'))}; {_over(m)})", ""]
    rows = []
    cm = m.get("confusion_matrix")
    labels = m.get("label_dict") or {}
    names = sorted(labels, key=labels.get) if labels else [str(i) for i in range(len(cm or []))]
    pos = labels.get(m.get("positive_label")) if m.get("positive_label") else None
    if cm:
        total = sum(map(sum, cm))
        correct = sum(cm[i][i] for i in range(len(cm)))
        rows.append(["accuracy", _num(m.get("accuracy")), _proportion_ci(m, "accuracy", correct, total)])
        if pos is not None:
            tp, fn = cm[pos][pos], sum(cm[pos]) - cm[pos][pos]
            neg = [i for i in range(len(cm)) if i != pos]
            tn = sum(cm[i][j] for i in neg for j in neg)
            fp = sum(cm[i][pos] for i in neg)
            rows.append([f"sensitivity ({m.get('positive_label')} positive)", _num(m.get("sensitivity")),
                         _proportion_ci(m, "sensitivity", tp, tp + fn)])
            rows.append(["specificity", _num(m.get("specificity")), _proportion_ci(m, "specificity", tn, tn + fp)])
        if m.get("balanced_accuracy") is not None:
            rows.append(["balanced accuracy", _num(m["balanced_accuracy"]), ""])
    single = m.get("one_per_unit") or {}
    if m.get("unit") not in (None, "image") and single.get("value") is not None:
        rows.append([f"{name} on one image per {m['unit']}", _num(single["value"]),
                     f"{single.get('n')} images, no two from one {m['unit']}"])
    for key in ("bleu1", "bleu2", "bleu3", "exact_match", "mean_generated_words", "vocab_size"):
        if m.get(key) is not None:
            rows.append([key.replace("_", " "), _num(m[key]), ""])
    if m.get("per_class_dice"):
        rows.append(["Dice per foreground class", ", ".join(_num(v) for v in m["per_class_dice"]), ""])
    if m.get("auroc_by_score"):
        rows.append(["AUROC by score kind", ", ".join(f"{k} {_num(v)}" for k, v in m["auroc_by_score"].items()), ""])
    if m.get("n_test_anomalous") is not None:
        rows.append(["test cases", f"{m['n_test_anomalous']} anomalous / {m.get('n_test_normal')} normal "
                                   f"(normal class: {m.get('normal_label')})", ""])
    if rows:
        lines += _table(["measure", "value", "interval"], rows) + [""]
    if cm:
        lines += ["Confusion matrix (rows: true class, columns: predicted):", ""]
        lines += _table(["true \\ predicted", *names], [[names[i], *row] for i, row in enumerate(cm)]) + [""]
    if m.get("subgroups"):
        lines += ["Subgroups:", ""]
        lines += _table(["group", "n", name, "accuracy"],
                        [[g, s.get("n"), _num(s.get("value")), _num(s.get("accuracy"))]
                         for g, s in m["subgroups"].items()]) + [""]
    return lines


def _operating_point_section(run_root: Path, round_k: int) -> list[str]:
    """The threshold the model is delivered at, how it was chosen, and the test counts there."""
    point = _read(run_root / "operating_point.json")
    if not point or point.get("round") != round_k:
        return []
    lines = ["## Operating point", "",
             f"A case is called **{point['positive_label']}** when its probability is at least "
             f"**{point['threshold']:.4f}** ({point['how']}; set at the review gate by {point.get('who')}). The "
             "bundle's predictor applies it (configs/inference.json, operating_point).", ""]
    over = point.get("interval", "Wilson, per image")
    rows = [["sensitivity", _num(point.get("sensitivity")), _ci(point.get("sensitivity_ci95")) +
             f" ({over}; {point['tp']}/{point['tp'] + point['fn']}; {point['missed']} missed)"],
            ["specificity", _num(point.get("specificity")), _ci(point.get("specificity_ci95")) +
             f" ({over}; {point['tn']}/{point['tn'] + point['fp']}; {point['false_alarms']} false alarms)"],
            ["positive predictive value", _num(point.get("ppv")), ""],
            ["negative predictive value", _num(point.get("npv")), ""]]
    lines += _table(["at the operating point (test set)", "value", "interval"], rows) + [""]
    if point.get("chosen_on") == "test":
        lines += ["The threshold was chosen on the test set itself, so these counts are optimistic: confirm them "
                  "on new cases (external validation) before relying on them.", ""]
    return lines


def _data_section(card: dict, m: dict, index_report: dict | None, cfg: dict) -> list[str]:
    kind = "GENERATED (not real patient data)" if card.get("provenance") == "generated" else "real"
    lines = ["## Dataset", "",
             f"- **{card.get('title', card.get('name'))}** (`{card.get('name')}`): {kind}",
             f"- modality {card.get('modality')}, {card.get('dimension')}, anatomy: {card.get('anatomy')}",
             f"- source: {card.get('source')}", f"- licence: {card.get('licence')}"]
    if card.get("label_names"):
        lines.append(f"- classes / structures: {', '.join(card['label_names'])}")
    lines += ["", "### Split", "",
              f"- training: {m.get('n_train')} cases; validation (held out from training to pick the best epoch): "
              f"{m.get('n_val')}; test: {m.get('n_test')}"]
    counts = (index_report or {}).get("class_counts") or {}
    for split in ("train", "test"):
        if counts.get(split):
            lines.append(f"- {split} index class counts: " + ", ".join(f"{k} {v}" for k, v in sorted(counts[split].items())))
    if cfg.get("max_train_items") or cfg.get("max_test_items"):
        lines.append(f"- subsampled: max_train_items={cfg.get('max_train_items')}, "
                     f"max_test_items={cfg.get('max_test_items')} (the class counts above are the full index)")
    return lines + [""]


def _training_section(task: str, cfg: dict, m: dict, fill: dict) -> list[str]:
    network = NETWORKS.get(task) or f"{cfg.get('model', 'unknown')}"
    lines = ["## Training", "",
             f"- template: `{fill.get('template', task)}` {fill.get('version', '')}; network: {network}",
             f"- epochs run: {m.get('epochs')} (best epoch {m.get('best_epoch')}"
             + (", stopped early by the time limit" if m.get("stopped_early") else "") + ")",
             f"- training time: {_num(m.get('train_seconds'), 1)} s (whole script {_num(m.get('total_seconds'), 1)} s) "
             f"on {m.get('device')}"]
    settings = [f"{k}={cfg[k]}" for k in TRAINING_KEYS if k in cfg and cfg[k] is not None]
    lines.append("- settings: " + ", ".join(settings))
    return lines + [""]


def _limits(task: str, card: dict, m: dict, cfg: dict, index_dir: Path) -> list[str]:
    out = []
    if card.get("provenance") == "generated":
        out.append(f"The data are GENERATED ({card.get('source')}): the metrics say nothing about performance "
                   f"on real patients.")
    n_test = m.get("n_test") or 0
    ci = m.get("ci95") or []
    if n_test < SMALL_TEST:
        width = (f"; the 95% interval spans {_num(float(ci[1]) - float(ci[0]))}"
                 if len(ci) == 2 and None not in ci else "")
        out.append(f"Small test set: {n_test} case(s){width}. Treat the point estimate as rough.")
    if not ci or None in ci:
        out.append("The metric's 95% interval could not be computed (too few cases, or one class only).")
    for conf in card.get("confounders") or []:
        text = f"Possible shortcut, {conf.get('name')}: {conf.get('how_to_find')}"
        if "duplicate" in str(conf.get("name", "")).lower():
            text += " " + _duplicate_note(index_dir)
        out.append(text)
    if task == "anomaly_detection":
        out.append("No operating threshold was saved: the anomaly score ranks images but is not calibrated; "
                   "a threshold must be chosen on separate validation data before flagging images.")
    if task == "segmentation" and (cfg.get("spacing") or cfg.get("image_size")):
        out.append("Dice was measured in the resampled grid (spacing/size from the config), not in each image's "
                   "original grid; predicted masks are mapped back to the input grid by nearest-neighbour "
                   "inversion.")
    if task == "report_generation":
        out.append("BLEU measures word overlap with one reference report, not clinical correctness; generated "
                   "reports can be fluent and wrong.")
    if m.get("stopped_early"):
        out.append(f"Training stopped early at the time limit (time_limit_s={cfg.get('time_limit_s')}).")
    if (m.get("epochs") or 0) <= 2:
        out.append(f"Trained for only {m.get('epochs')} epoch(s).")
    return out


def _duplicate_note(index_dir: Path) -> str:
    records = []
    for split in ("train", "test"):
        records += _read(index_dir / f"{split}.json", []) or []
    if not records:
        return "(the index was not found, so whether the split kept copies together is not known)"
    if any("duplicate_group" in r for r in records):
        return "The index carries duplicate_group per image and the split keeps each group on one side."
    return "The index carries no duplicate_group: copies of one scan may sit in both train and test."


def _decisions(run_root: Path) -> list[str]:
    decisions = [_read(p) for p in sorted((run_root / "decisions").glob("*.json"))]
    decisions = sorted((d for d in decisions if d), key=lambda d: d.get("when") or "")
    lines = ["## Gate decisions", ""]
    if not decisions:
        return lines + ["No gate decision is recorded in this run.", ""]
    rows = [[d.get("gate"), d.get("action"), d.get("who"), d.get("via"), d.get("when"),
             "; ".join(str(d[k]) for k in ("dataset", "reason", "feedback") if d.get(k))] for d in decisions]
    return lines + _table(["gate", "action", "who", "via", "when", "details"], rows) + [""]


def render_card(run_root: Path, round_k: int, extra_sections: dict[str, str] | None = None) -> str:
    """Markdown model card of round ``round_k`` of the run in ``run_root``."""
    run_root = Path(run_root).resolve()
    round_dir = run_root / "rounds" / str(round_k)
    m = _read(round_dir / "metrics.json")
    if m is None:
        raise FileNotFoundError(f"{round_dir / 'metrics.json'} not found: evaluate round {round_k} first "
                                f"(`medbuilder stage {run_root.name} evaluate --round {round_k}`)")
    cfg = _read(round_dir / "config.json", {}) or {}
    fill = _read(round_dir / "template_fill.json", {}) or {}
    card = _read(run_root / "datacard.json", {}) or {}
    request = _read(run_root / "request.json", {}) or {}
    task = m.get("task") or fill.get("task", "")
    index_dir = Path(cfg.get("index_dir") or run_root / "workspace" / "index")
    lines = [f"# Model card: {TASK_TEXT.get(task, task)} on {card.get('title', card.get('name', 'unknown data'))}", "",
             f"Run `{run_root.name}`, training round {round_k}. Built by medbuilder.", "",
             "## Request", "", f"> {request.get('text', '(no request recorded)')}", "",
             "## Model and task", "",
             f"- task: {TASK_TEXT.get(task, task)}",
             f"- network: {NETWORKS.get(task) or cfg.get('model')}; input "
             f"{cfg.get('in_channels', 1)} channel(s), size {cfg.get('patch_size') or cfg.get('image_size')}",
             f"- outputs: " + {"diagnosis": "class probabilities and the predicted class",
                               "segmentation": "a label mask in the input's grid, and voxel counts",
                               "anomaly_detection": "an anomaly score per image (no threshold)",
                               "report_generation": "a report text"}.get(task, ""), ""]
    lines += _data_section(card, m, _read(run_root / "index_report.json"), cfg)
    lines += _metrics_section(m)
    lines += _operating_point_section(run_root, round_k)
    lines += check_sections(run_root, round_k)
    lines += _training_section(task, cfg, m, fill)
    lines += ["## Intended use", "",
              "Research and teaching only. This is NOT a medical device: it is not cleared or approved for "
              "clinical use and must not be used to diagnose, triage or treat patients.",
              f"It was trained for the request above, on {card.get('dimension')} images from "
              f"{card.get('title', card.get('name'))} (modality: {card.get('modality')}; anatomy: "
              f"{card.get('anatomy')})"
              + (", which are generated, not acquired from patients" if card.get("provenance") == "generated" else "")
              + ". It has not been validated on other scanners, sites or patient populations.", ""]
    lines += ["## Known limits", ""] + [f"- {item}" for item in _limits(task, card, m, cfg, index_dir)] + [""]
    for title, body in (extra_sections or {}).items():
        lines += [f"## {title}", "", body.strip(), ""]
    lines += _decisions(run_root)
    return "\n".join(lines)
