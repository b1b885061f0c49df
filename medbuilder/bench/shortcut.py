"""`medbuilder bench shortcut`: shortcut reliance before and after each refinement strategy.

Two cases. ``synth-cxr-drain`` (GENERATED): a drain-like line agrees with the
pneumothorax-like label in 90% of training images and 50% of test images, so the
test split is one where the confounder does not agree with the label. ``br35h``
(real): burnt-in text, watermarks and borders lie outside the head; the
"deconfounded" test set is every test image blanked outside the head.

Per case, the diagnosis template is trained once without a strategy (the
baseline) and once per strategy the datacard's confounder allows
(``review/strategies.py``), on the reference split with the same seed; each model
gets the four shortcut measures (``review/shortcuts.py``) and the AUROC on the
deconfounded test set. Results: a printed table and ``shortcut.json`` /
``shortcut.md`` in the output folder.

Each round prepares its data as a build's round does: medbuilder's preprocessing into the store before
the training (``cache/offer.py``; a store that starts empty, so each round's preparation is counted once),
which the training and the measures then read. A round's seconds are its preparation, training and
measures.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from medbuilder.cache import offer
from medbuilder.protocol.datacard import Confounder
from medbuilder.protocol.datasets import prepare, reference_index
from medbuilder.protocol.registry import Registry
from medbuilder.protocol.templates import fill_template, run_training
from medbuilder.review import roi_blanking, shortcuts
from medbuilder.review.interpret import load_predictor
from medbuilder.review.strategies import strategies_for
from medbuilder.settings import get_settings

# The generated case's targets (issue: flip rate >= 50% before, at least halved after, AUROC within 2 points).
TARGET_FLIP_BEFORE, TARGET_FLIP_CUT, TARGET_AUROC_DROP = 0.5, 0.5, 0.02
# A refinement round (training with a strategy, then its measures) at most this many times round 0's seconds.
TARGET_ROUND_RATIO = 1.3


@dataclass
class Case:
    dataset: str
    headline: str  # the measure the targets are stated on
    train: dict = field(default_factory=dict)


CASES = {
    "synth-cxr-drain": Case("synth-cxr-drain", "counterfactual_flip_rate", {"image_size": [64, 64], "epochs": 12}),
    "br35h": Case("br35h", "attribution_share", {"image_size": [96, 96], "epochs": 10}),
}


def case_confounder(dataset: str) -> Confounder:
    from medbuilder.settings import get_settings

    card = Registry(get_settings().datacards_dir).get(dataset)
    if not card.confounders:
        raise ValueError(f"datacard {dataset} names no confounder: the shortcut bench needs one")
    return card.confounders[0]


def strategy_grid(confounder: Confounder) -> dict[str, dict]:
    """The baseline and each strategy the flow would choose for the confounder, plus those it leaves out
    (inpainting where twins exist, group balancing alone), so their effect is measured too."""
    grid = {"baseline": {}}
    for _, keys in strategies_for(confounder):
        grid["+".join(keys)] = keys
    if confounder.mask_column and "mask_confounder" not in grid:
        grid["mask_confounder"] = {"mask_confounder": True}
    if confounder.presence_column and "group_balanced" not in grid:
        grid["group_balanced"] = {"group_balanced": True}
    return grid


def measure(workspace: Path, index_dir: Path, roi: str | None) -> dict:
    """The four measures and the AUROC on the deconfounded test set, for a trained workspace."""
    predictor = load_predictor(workspace, workspace)
    positive = predictor.names[predictor.positive]
    records = shortcuts.join_records(json.loads((workspace / "predictions.json").read_text()), index_dir)
    found = shortcuts.all_measures(predictor, records, positive, roi, workspace / "measures")
    return {"measures": found, "deconfounded_auroc": deconfounded_auroc(predictor, records, positive, found, roi)}


def deconfounded_auroc(predictor, records: list[dict], positive: str, found: dict, roi: str | None) -> float | None:
    """AUROC where the confounder cannot follow the label: roi cases score the blanked images; a split
    whose test agreement is already 50% (synth-cxr-drain) is its own test set."""
    import numpy as np

    if not roi:
        y, _, score = shortcuts.positive_of(records, positive)
        return shortcuts.auroc(y, score)
    import torch

    from medbuilder.review import saliency

    with tempfile.TemporaryDirectory() as examples:
        blanked, skipped = roi_blanking.blank_outside_roi(predictor, records, roi, Path(examples))
    if skipped or not blanked:
        return None
    probs = saliency.class_probabilities(predictor, torch.stack([x for _, x in blanked]))
    scores = probs[:, predictor.positive].numpy()
    return shortcuts.auroc(np.array([r["label"] == positive for r in records]), scores)


def run_case(name: str, out: Path, data_dir: Path, limit: int | None, epochs: int | None,
             only: list[str] | None, echo) -> dict:
    case = CASES[name]
    confounder = case_confounder(case.dataset)
    root = prepare(case.dataset, data_dir / (f"{case.dataset}-limit{limit}" if limit else case.dataset), limit,
                   echo=lambda _: None)
    index_dir = out / name / "index"
    reference_index(case.dataset, root, "diagnosis").write(index_dir)
    rows = {}
    for strategy, keys in strategy_grid(confounder).items():
        if only and strategy != "baseline" and strategy not in only:
            continue
        workspace = out / name / strategy
        values = {"index_dir": str(index_dir.resolve()), "device": "cpu", "num_threads": 2, "bootstrap": 200,
                  "seed": 0, **case.train, **({"epochs": epochs} if epochs else {}), **keys}
        fill_template("diagnosis", workspace, values, overwrite=True)
        started = time.perf_counter()
        prepared = offer(workspace, "diagnosis", index_dir, [root], get_settings())
        trained_from = time.perf_counter()
        metrics = run_training(workspace, echo=False)
        trained = time.perf_counter()
        found = measure(workspace, index_dir, confounder.roi)
        rows[strategy] = {"keys": keys, "auroc": metrics["value"], "ci95": metrics.get("ci95"),
                          "prepare_seconds": round(trained_from - started, 1), "prepared": prepared.line(),
                          "train_seconds": round(trained - trained_from, 1),
                          "measure_seconds": round(time.perf_counter() - trained, 1), **found}
        rows[strategy]["round_ratio"] = round_ratio(rows)
        echo(f"  {name} / {strategy}: AUROC {metrics['value']:.3f}, "
             f"{case.headline} {_fmt(found['measures'][case.headline]['value'])}, "
             f"{round_seconds(rows[strategy]):.1f} s ({prepared.line()})")
    return {"dataset": case.dataset, "confounder": confounder.name, "roi": confounder.roi,
            "headline": case.headline, "n_train": metrics.get("n_train"), "n_test": metrics.get("n_test"),
            "strategies": rows, "targets": targets(rows) if name == "synth-cxr-drain" else None}


def round_seconds(row: dict) -> float:
    """A round's seconds: its data preparation, training and measures."""
    return row.get("prepare_seconds", 0.0) + row["train_seconds"] + row["measure_seconds"]


def round_ratio(rows: dict) -> float | None:
    """The newest row's round seconds over the baseline's (round 0: no strategy)."""
    base, last = rows.get("baseline"), list(rows.values())[-1]
    if not base:
        return None
    return round(round_seconds(last) / max(round_seconds(base), 1e-9), 2)


def targets(rows: dict) -> dict:
    """The generated case's targets, per strategy against the baseline."""
    base = rows["baseline"]
    flip0 = base["measures"]["counterfactual_flip_rate"]["value"]
    out = {"flip_before_at_least_0.5": flip0 is not None and flip0 >= TARGET_FLIP_BEFORE}
    for strategy, row in rows.items():
        if strategy == "baseline":
            continue
        flip = row["measures"]["counterfactual_flip_rate"]["value"]
        out[strategy] = {"flip_halved": None if flip is None or flip0 is None else flip <= flip0 * TARGET_FLIP_CUT,
                         "auroc_within_2_points": row["auroc"] >= base["auroc"] - TARGET_AUROC_DROP}
    return out


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def render(results: dict) -> str:
    lines = []
    for name, case in results["cases"].items():
        lines += [f"## {name} (confounder: {case['confounder']}; {case['n_train']} train / {case['n_test']} test)", "",
                  "| strategy | AUROC (95% CI) | deconfounded AUROC | flip rate | attribution share | subgroup gap | "
                  "confounded FPR | clean-negative FPR | prepare s | train s | measures s | round / round 0 |",
                  "|" + " --- |" * 12]
        for strategy, row in case["strategies"].items():
            m = row["measures"]
            ci = row.get("ci95") or [None, None]
            lines.append(f"| {strategy} | {_fmt(row['auroc'])} ({_fmt(ci[0])}-{_fmt(ci[1])}) | "
                         f"{_fmt(row['deconfounded_auroc'])} | {_fmt(m['counterfactual_flip_rate']['value'])} | "
                         f"{_fmt(m['attribution_share']['value'])} | {_fmt(m['subgroup_gap']['value'])} | "
                         f"{_fmt(m['confounded_fpr']['value'])} | {_fmt(m['confounded_fpr'].get('fpr_clean'))} | "
                         f"{row.get('prepare_seconds', 0):.1f} | {row['train_seconds']:.1f} | "
                         f"{row.get('measure_seconds', 0):.1f} | "
                         f"{_fmt(row.get('round_ratio'))} |")
        within = [k for k, r in case["strategies"].items() if k != "baseline"
                  and r.get("round_ratio") is not None and r["round_ratio"] <= TARGET_ROUND_RATIO]
        lines += ["", "Round time (data preparation, training with the strategy, its measures) <= "
                      f"{TARGET_ROUND_RATIO} x round 0's "
                      f"in {len(within)} of {len(case['strategies']) - 1} strategies."]
        if case["targets"]:
            lines += ["", "Targets: " + json.dumps(case["targets"])]
        lines.append("")
    return "\n".join(lines)


@contextmanager
def empty_store():
    """The bench's rounds use a store of their own, empty at the start (removed after)."""
    saved = os.environ.get("MEDBUILDER_CACHE_DIR")
    store = tempfile.mkdtemp(prefix="medbuilder-shortcut-store-")
    os.environ["MEDBUILDER_CACHE_DIR"] = store
    get_settings.cache_clear()
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("MEDBUILDER_CACHE_DIR", None)
        else:
            os.environ["MEDBUILDER_CACHE_DIR"] = saved
        get_settings.cache_clear()
        shutil.rmtree(store, ignore_errors=True)


def run_bench(cases: list[str], out: Path, data_dir: Path, limit: int | None = None, epochs: int | None = None,
              only: list[str] | None = None, echo=print) -> dict:
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        raise ValueError(f"unknown case(s) {unknown}; known: {', '.join(CASES)}")
    started = time.time()
    with empty_store():
        results = {"cases": {name: run_case(name, out, data_dir, limit, epochs, only, echo) for name in cases},
                   "limit": limit, "epochs": epochs}
    results["seconds"] = round(time.time() - started, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "shortcut.json").write_text(json.dumps(results, indent=2, default=str))
    (out / "shortcut.md").write_text(render(results))
    return results
