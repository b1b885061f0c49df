"""`medbuilder bench` results: the printed table (like M3Builder's Tables 5-7), bench.json, bench.md, figures."""

from __future__ import annotations

import json
import math
from pathlib import Path
from statistics import mean

from medbuilder.bench.cases import SPEED_TARGET, TRAINING_TARGET
from medbuilder.bench.timing import budget_lines, stage_seconds_table
from medbuilder.stages.registry import ROLES

SHORT = {"task_manager": "TM", "data_engineer": "DE", "module_architect": "MA", "model_trainer": "MT"}


def _mean(values) -> float | None:
    vals = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return float(mean(vals)) if vals else None


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def summarise(results: dict) -> list[dict]:
    """One row per case, over its repeats: completion and success counts, means of the figures."""
    rows = []
    for name in results["cases"]:
        runs = [r for r in results["runs"] if r["case"] == name]
        if not runs:
            continue
        roles = {}
        for role in ROLES:
            per = [r.get("roles", {}).get(role) for r in runs]
            roles[role] = {"actions": _mean(p["actions"] for p in per if p),
                           "iterations": _mean(p["iterations"] for p in per if p),
                           "tokens": _mean(p["tokens"] for p in per if p),
                           "seconds": _mean(p["seconds"] for p in per if p)}
        refs = [r.get("reference") or {} for r in runs]
        rows.append({
            "case": name, "task": runs[0]["task"], "dataset": runs[0]["dataset"], "provenance": runs[0]["provenance"],
            "repeats": len(runs), "completed": sum(r.get("status") == "delivered" for r in runs),
            "success": sum(bool(r.get("success")) for r in runs), "metric": runs[0].get("metric") or refs[0].get("metric"),
            "value": _mean(r.get("value") for r in runs), "reference": _mean(x.get("value") for x in refs),
            "reference_errors": [x["error"] for x in refs if x.get("error")],
            "end_to_end_seconds": _mean(r.get("end_to_end_seconds") for r in runs),
            "reference_seconds": _mean(x.get("process_seconds") or x.get("seconds") for x in refs),
            "time_ratio": _mean(r.get("time_ratio") for r in runs), "speed_ratio": _mean(r.get("speed_ratio") for r in runs),
            "training_run_seconds": _mean(r.get("training_run_seconds") for r in runs),
            "other_seconds": _mean(r.get("other_seconds") for r in runs),
            "training_ratio": _mean(r.get("training_ratio") for r in runs),
            "training_prepared_ratio": _mean(r.get("training_prepared_ratio") for r in runs),
            "fixed_seconds": _mean((r.get("fixed") or {}).get("seconds") for r in runs),
            "baseline": _baseline_summary([r.get("baseline") for r in runs if r.get("baseline")]),
            "tokens": _mean(r.get("tokens") for r in runs), "roles": roles,
            "units": next((r["units"] for r in runs if r.get("units")), None),
        })
    return rows


def _baseline_summary(baselines: list[dict]) -> dict | None:
    """The standard recipe over a case's repeats: mean metric, epochs and seconds, its budget, errors."""
    if not baselines:
        return None
    done = [b for b in baselines if not b.get("error")]
    return {"value": _mean(b.get("value") for b in done), "epochs": _mean(b.get("epochs") for b in done),
            "batches": _mean(b.get("batches") for b in done),
            "seconds": _mean(b.get("seconds") for b in done), "budget": _mean(b.get("budget_seconds") for b in done),
            "over_budget": sum(bool(b.get("over_budget")) for b in done),
            "recipe": next((b["recipe"] for b in done if b.get("recipe")), None),
            "errors": [b["error"] for b in baselines if b.get("error")]}


def prefect_line(results: dict) -> str:
    seconds = results.get("prefect_start_seconds")
    if seconds is None:
        return "The builds used the configured Prefect server (PREFECT_API_URL).\n"
    return (f"The local Prefect server started once, before the first case, in {seconds:.1f} s; every build used it "
            "(as builds use the server `medbuilder up` keeps running), so no case's seconds include that start.\n")


def render(results: dict) -> str:
    """A markdown table: completion, actions/iterations per role, metric vs reference, the two ratios."""
    head = ["case", "data", "completed", "success", *[f"{SHORT[r]} act / it" for r in ROLES], "metric",
            "medbuilder", "reference", "end-to-end s", "training run s", "other s", "reference s", "time ratio",
            "training ratio", "training + preparation ratio", "speed ratio", "fixed s", "standard recipe"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in summarise(results):
        roles = [f"{_fmt(row['roles'][r]['actions'], 1)} / {_fmt(row['roles'][r]['iterations'], 1)}" for r in ROLES]
        lines.append("| " + " | ".join([
            row["case"], row["provenance"], f"{row['completed']}/{row['repeats']}", f"{row['success']}/{row['repeats']}",
            *roles, row["metric"] or "-", _fmt(row["value"]), _fmt(row["reference"]),
            _fmt(row["end_to_end_seconds"], 0), _fmt(row["training_run_seconds"], 0), _fmt(row["other_seconds"], 0),
            _fmt(row["reference_seconds"], 0), _fmt(row["time_ratio"], 2), _fmt(row["training_ratio"], 2),
            _fmt(row["training_prepared_ratio"], 2), _fmt(row["speed_ratio"], 2), _fmt(row["fixed_seconds"], 1),
            _fmt((row["baseline"] or {}).get("value"))]) + " |")
    mode = "QUICK (small subsets, short training: not benchmark figures)" if results.get("quick") else "full"
    if results.get("train_epochs"):
        mode += f", every training {results['train_epochs']} epochs (--epochs)"
    units = [f"- {row['case']}: {row['units']}" for row in summarise(results) if row.get("units")]
    if units:
        lines += ["", "Test sets (each interval resamples these independent units):", *units]
    lines += ["", parity_line(results), "", "Quality at equal time (medbuilder's choices against the standard recipe "
              "given the build's end-to-end seconds):", *baseline_lines(results), "", cache_line(results), "",
              prefect_line(results),
              "Seconds per stage (`outside stages`: the flow itself, its gates and Prefect's bookkeeping):", "",
              *stage_seconds_table(timed_runs(results)), "", "The fixed part (Prefect, agents, checks, gates, the "
              "interpretability report, delivery) against its budget (repeat `again`: the first case built once more "
              "in the same process, the Prefect server already up and the imports warm):",
              *budget_lines(timed_runs(results)), "",
              f"Mode: {mode}; core {results['core']}; {results['repeats']} repeat(s); success = delivered and "
              f"metric within {results['tolerance']:.0%} (relative) of the reference pipeline's, or better. "
              "act / it: tool calls / debug iterations (attempts) per role, mean over repeats. time ratio: medbuilder "
              "end-to-end seconds (the flow, dataset already prepared) / the reference script's process seconds; "
              "training run s: the delivered training's `python train.py` (loading, training, test predictions, "
              "metrics: the reference's work); other s: the rest (agents, checks, evaluation and interpretability "
              "report, earlier rounds, delivery, Prefect); training ratio: training run s / reference s (the same "
              "configuration and epochs); training + preparation ratio: the same with the data preparation into the "
              "preprocessed store before the training; speed ratio: the generated training code's images per second "
              "/ the reference's, both over whole epochs (batching, augmentation, steps); fixed s: end-to-end less "
              "the training run, the data preparation and the evaluation's model inference; standard recipe: the "
              "baseline's metric at the same wall-clock budget "
              "(all measured in the same run)."]
    return "\n".join(lines)


CACHE_TARGET = 0.10


def cache_line(results: dict) -> str:
    """The preprocessed store: data ready in the first build of a case and in the same build again."""
    check = results.get("cache_check")
    if not check or not check.get("second"):
        return "Preprocessed store: no second build was measured" + (f" ({check['error']})" if check and
                                                                       check.get("error") else "") + "."
    first, second = check["first"], check["second"]
    return (f"Preprocessed store ({check['case']}): data ready {first['seconds']:.1f} s in the first build "
            f"({first['made']} images preprocessed: {first['preprocess_seconds']:.1f} s, then the training script's "
            f"loading {_fmt(first['script_seconds'], 1)} s) and {second['seconds']:.1f} s in the same build again "
            f"({second['made']} preprocessed, {second['hits']} found; {second['preprocess_seconds']:.1f} + "
            f"{_fmt(second['script_seconds'], 1)} s): ratio {_fmt(check['ratio'], 3)} (target <= {CACHE_TARGET:.2f}).")


def timed_runs(results: dict) -> list[dict]:
    """Every run, then the second build of the store check (when it ran)."""
    again = (results.get("cache_check") or {}).get("run")
    return results["runs"] + ([again] if again else [])


def parity_line(results: dict) -> str:
    """How many cases meet training parity: the training run's seconds and its images per second."""
    rows = [r for r in summarise(results) if r["training_ratio"] is not None]

    def count(key: str, ok) -> int:
        return sum(r[key] is not None and ok(r[key]) for r in rows)

    return (f"Training parity (the same configuration and epochs): training run <= {TRAINING_TARGET:.2f} x the "
            f"reference in {count('training_ratio', lambda v: v <= TRAINING_TARGET)} of {len(rows)} cases, "
            f"{count('training_prepared_ratio', lambda v: v <= TRAINING_TARGET)} of {len(rows)} with its data "
            f"preparation; images per second >= {SPEED_TARGET:.2f} x in "
            f"{count('speed_ratio', lambda v: v >= SPEED_TARGET)} of {len(rows)}.")


def baseline_lines(results: dict) -> list[str]:
    """Per case: medbuilder's metric next to the standard recipe's at the same budget."""
    lines = []
    for row in summarise(results):
        base = row["baseline"]
        if not base:
            continue
        if base["errors"] and base["value"] is None:
            lines.append(f"- {row['case']}: the standard recipe failed: {base['errors'][0]}")
            continue
        over = f", over its budget in {base['over_budget']} repeat(s)" if base["over_budget"] else ""
        epochs = (f"{_fmt(base['epochs'], 2)} epochs ({_fmt(base['batches'], 0)} batches)" if base["epochs"] else
                  "no training")
        lines.append(f"- {row['case']}: medbuilder {_fmt(row['value'])} vs {_fmt(base['value'])} ({row['metric']}) for "
                     f"{base['recipe']}: {epochs} in {_fmt(base['seconds'], 1)} s of {_fmt(base['budget'], 1)} s{over}")
    return lines or ["- none run"]


def _stage_table(results: dict) -> str:
    lines = ["| case | repeat | stage | status | iterations | actions | tokens | seconds |", "|---|---|---|---|---|---|---|---|"]
    for run in results["runs"]:
        for stage, rec in (run.get("stages") or {}).items():
            lines.append(f"| {run['case']} | {run['repeat']} | {stage} | {rec.get('status')} | {rec.get('attempts')} | "
                         f"{rec.get('actions')} | {rec.get('tokens')} | {_fmt(rec.get('seconds'), 1)} |")
    return "\n".join(lines)


def plot(results: dict, out: Path) -> list[str]:
    """bench-metrics.png (medbuilder vs reference metric per case) and bench-time.png (seconds per role + reference)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summarise(results)
    names = [r["case"] for r in rows]
    files = []
    fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(rows) + 2), 3.6))
    xs = range(len(rows))
    ax.bar([x - 0.2 for x in xs], [r["value"] or 0 for r in rows], 0.4, label="medbuilder (delivered)")
    ax.bar([x + 0.2 for x in xs], [r["reference"] or 0 for r in rows], 0.4, label="reference pipeline")
    ax.set_xticks(list(xs), [f"{n}\n({r['metric'] or '-'})" for n, r in zip(names, rows)], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("test metric")
    files.append(_save(fig, ax, out / "bench-metrics.png", "Delivered metric vs reference", results, legend_size=8))

    fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(rows) + 2), 3.6))
    bottom = [0.0] * len(rows)
    for role in ROLES:
        vals = [r["roles"][role]["seconds"] or 0 for r in rows]
        ax.bar(list(xs), vals, 0.4, bottom=bottom, label=role)
        bottom = [b + v for b, v in zip(bottom, vals)]
    rest = [max(0.0, (r["end_to_end_seconds"] or 0) - b) for r, b in zip(rows, bottom)]
    ax.bar(list(xs), rest, 0.4, bottom=bottom, label="evaluation, delivery, Prefect", color="lightgrey")
    ax.bar([x + 0.42 for x in xs], [r["reference_seconds"] or 0 for r in rows], 0.4, label="reference script", color="grey")
    ax.set_xticks(list(xs), names, fontsize=8)
    ax.set_ylabel("seconds")
    files.append(_save(fig, ax, out / "bench-time.png", "End-to-end seconds vs reference", results, legend_size=7))
    return files


def _save(fig, ax, path: Path, title: str, results: dict, legend_size: int) -> str:
    """Title (marked QUICK for a smoke run), legend, write the PNG, close; returns the file name."""
    import matplotlib.pyplot as plt

    ax.set_title(title + (" (QUICK)" if results.get("quick") else ""), fontsize=10)
    ax.legend(fontsize=legend_size)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def write(results: dict, out: Path) -> dict[str, Path]:
    """bench.json (every run and the summary rows), bench.md (tables and figures), the PNG figures."""
    out.mkdir(parents=True, exist_ok=True)
    results = {**results, "summary": summarise(results)}
    (out / "bench.json").write_text(json.dumps(results, indent=1, default=str))
    figures = plot(results, out)
    quick = " (QUICK: smoke run on small subsets, not benchmark figures)" if results.get("quick") else ""
    md = [f"# medbuilder bench{quick}", "", render(results), "", "## Stages", "", _stage_table(results), "",
          "## Figures", "", *[f"![{f}]({f})" for f in figures], "",
          f"Total {results['seconds']:.0f} s. Every run's folder, reference command and output: `bench.json`."]
    errors = [(r["case"], r.get("error") or (r.get("reference") or {}).get("error")) for r in results["runs"]
              if r.get("error") or (r.get("reference") or {}).get("error")]
    if errors:
        md += ["", "## Errors", "", *[f"- {c}: {e}" for c, e in errors]]
    (out / "bench.md").write_text("\n".join(md) + "\n")
    return {"json": out / "bench.json", "markdown": out / "bench.md", **{f: out / f for f in figures}}
