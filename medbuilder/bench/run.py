"""`medbuilder bench`: every case through the real `build_model` flow, then its reference pipeline and baseline.

Per case and repeat: prepare the dataset (a small subset with ``quick``), run the flow in this
process with automatic approvals, read the run folder (``stages/*.json`` for actions, debug
iterations, tokens and seconds per role and stage; ``rounds/<k>/`` for the delivered config and
metrics; ``report/round-<k>/summary.json`` for the evaluation's split), then run
``benchmarks/references/<task>.py`` with the delivered round's config, index folder and the epochs
its training completed (parity: the same configuration), and ``benchmarks/baselines/<task>.py``,
MONAI's standard recipe for the task, given the build's end-to-end seconds as its wall-clock budget
(quality at equal time). Compared: the metric (success: within 5% relative of the reference's, or
better), end-to-end time / reference time, the delivered training run (the Model Trainer's last
`python train.py`: loading, training, test predictions and metrics, the reference's work) / reference
time, with and without the data preparation into the preprocessed store before it, the generated
code's training images per second / the reference loop's, and the fixed part (``timing.py``).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

from medbuilder import progress
from medbuilder.bench.cases import QUICK_TRAIN_TIME_LIMIT_S, SUCCESS_TOLERANCE, Case, relative_gap, succeeded
from medbuilder.bench.scripts import REFERENCE_TIMEOUT_S, run_baseline, run_reference
from medbuilder.bench.timing import evaluation_seconds, fixed_part



def _settings():
    from medbuilder.settings import get_settings

    get_settings.cache_clear()
    return get_settings()


def prepare_case(case: Case, quick: bool, echo: Callable[[str], None]) -> Path:
    """Lay the case's dataset out where its datacard points (under the data folder)."""
    from medbuilder.protocol.datasets import prepare
    from medbuilder.protocol.registry import Registry

    settings = _settings()
    card = Registry(settings.datacards_dir).get(case.dataset)
    root = settings.resolve_data_path(Path(card.path))
    return prepare(card.prepare or case.dataset, root, case.quick_limit if quick else None, echo=echo)


def stage_table(run_dir: Path) -> dict[str, dict]:
    """Every stage record: status, attempts (debug iterations), actions, tokens, seconds."""
    out = {}
    for file in sorted((run_dir / "stages").glob("*.json"), key=lambda f: f.stat().st_mtime):
        rec = json.loads(file.read_text())
        out[rec.get("stage", file.stem)] = {k: rec.get(k) for k in ("status", "attempts", "actions", "tokens", "seconds")}
    return out


def training_run_seconds(run_dir: Path) -> float | None:
    """Wall seconds of the Model Trainer's last `python train.py` run (its newest trajectory's last such step)."""
    from medbuilder.agents.trajectory import Trajectory

    files = sorted((run_dir / "trajectories").glob("model_trainer-*.json"), key=lambda f: int(f.stem.rsplit("-", 1)[1]))
    for file in reversed(files):
        steps = [s for s in Trajectory.load(file).steps
                 if s.tool == "run_script" and "train.py" in str(s.args.get("command", ""))]
        if steps:
            return steps[-1].seconds
    return None


def data_ready(run_dir: Path, metrics: dict) -> dict:
    """Seconds until the delivered training had its data: medbuilder's preprocessing into its store during the
    build (every pre-script step, logs/preprocess.jsonl) plus the training script's own loading (its
    "data ready", metrics.json cache_seconds)."""
    offers = []
    log = run_dir / "logs" / "preprocess.jsonl"
    if log.exists():
        offers = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    preprocess = sum(o.get("seconds") or 0.0 for o in offers)
    script = metrics.get("cache_seconds")
    return {"preprocess_seconds": round(preprocess, 2), "script_seconds": script,
            "seconds": round(preprocess + (script or 0.0), 2), "made": sum(o.get("made") or 0 for o in offers),
            "hits": sum(o.get("hits") or 0 for o in offers), "offers": len(offers)}


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b or not math.isfinite(a) or not math.isfinite(b):
        return None
    return a / b


def run_case(case: Case, core: str, quick: bool, echo: Callable[[str], None], reference: bool = True) -> dict:
    """One case, once: the flow, the run folder's figures, the reference pipeline (unless `reference` is
    False), the comparison."""
    from medbuilder.flows.build import build_model
    from medbuilder.lifecycle.finish import role_table
    from medbuilder.protocol.run_folder import RunFolder

    row: dict = {"case": case.name, "task": case.task, "dataset": case.dataset, "request": case.request,
                 "provenance": case.provenance, "core": core, "quick": quick}
    started = time.perf_counter()
    try:
        prepare_case(case, quick, echo=lambda *_: None)
    except Exception as err:  # e.g. a source package missing: the case cannot run, the others can
        return {**row, "status": "error", "error": f"preparing {case.dataset}: {type(err).__name__}: {err}"}
    row["prepare_seconds"] = round(time.perf_counter() - started, 2)
    started = time.perf_counter()
    try:
        summary = build_model(request=case.request, dataset=case.dataset, core=core, approve="auto")
    except Exception as err:  # a role that failed every debug iteration: recorded, the bench goes on
        summary = {"status": "error", "error": f"{type(err).__name__}: {err}"}
    row["end_to_end_seconds"] = round(time.perf_counter() - started, 2)
    row["status"] = summary.get("status")
    row["error"] = summary.get("error")
    runs_dir = _settings().runs_dir
    run_dir = Path(summary["run_dir"]) if summary.get("run_dir") else _latest_run(runs_dir, started)
    row["run_dir"] = str(run_dir) if run_dir else None
    row.update(metric=summary.get("metric"), value=summary.get("value"), ci95=summary.get("ci95"),
               units=summary.get("units"),
               round=summary.get("round"))
    if run_dir is None:
        return row
    row["roles"] = role_table(RunFolder(run_dir))
    row["stages"] = stage_table(run_dir)
    row["tokens"] = sum(r.get("tokens") or 0 for r in row["roles"].values())
    k = row["round"] if row["round"] is not None else _last_round(run_dir)
    round_dir = run_dir / "rounds" / str(k) if k is not None else None
    if round_dir is None or not (round_dir / "config.json").exists():
        row["reference"] = {"error": "no trained round in the run folder"}
        return row
    config = json.loads((round_dir / "config.json").read_text())
    metrics = json.loads((round_dir / "metrics.json").read_text()) if (round_dir / "metrics.json").exists() else {}
    if row["value"] is None:
        row.update(metric=metrics.get("metric"), value=metrics.get("value"))
    index_dir = Path(config.get("index_dir") or run_dir / "workspace" / "index")
    row["generated"] = {k2: metrics.get(k2) for k2 in ("images_per_second", "train_seconds", "epochs", "stopped_early",
                                                         "n_train", "n_test")}
    row["generated"]["config"] = {k2: config.get(k2) for k2 in ("model", "image_size", "patch_size", "epochs",
                                                                "batch_size", "lr", "channels", "time_limit_s")}
    row["data_ready"] = data_ready(run_dir, metrics)
    row["evaluation"] = evaluation_seconds(run_dir)
    row["training_run_seconds"] = training_run_seconds(run_dir)
    row["fixed"] = fixed_part(row)
    if not reference:
        return row
    echo(f"[{case.name}] flow {row['status']} ({row['metric']} {row['value']}) in {row['end_to_end_seconds']:.0f} s; "
         f"reference pipeline ...")
    ref = run_reference(case.task, round_dir / "config.json", index_dir, metrics.get("epochs"), REFERENCE_TIMEOUT_S)
    row["reference"] = ref
    row["relative_gap"] = relative_gap(row["value"], ref.get("value"))
    row["success"] = succeeded(row["status"] or "", row["value"], ref.get("value"), SUCCESS_TOLERANCE)
    # The reference's wall time as a person running it sees it (the process, imports included).
    ref_seconds = ref.get("process_seconds") or ref.get("seconds")
    row["time_ratio"] = _ratio(row["end_to_end_seconds"], ref_seconds)
    row["training_ratio"] = _ratio(row["training_run_seconds"], ref_seconds)
    if row["training_run_seconds"] is not None:
        prepared = row["training_run_seconds"] + row["data_ready"]["preprocess_seconds"]
        row["training_prepared_ratio"] = _ratio(prepared, ref_seconds)
        row["other_seconds"] = round(row["end_to_end_seconds"] - row["training_run_seconds"], 2)
    # both rates over the whole epoch loop (batching, augmentation, steps), as the template counts its own
    row["speed_ratio"] = _ratio(metrics.get("images_per_second"),
                                ref.get("images_per_second_loop") or ref.get("images_per_second"))
    echo(f"[{case.name}] the standard recipe in the same {row['end_to_end_seconds']:.0f} s ...")
    row["baseline"] = run_baseline(case.task, round_dir / "config.json", index_dir, row["end_to_end_seconds"])
    return row


def _last_round(run_dir: Path) -> int | None:
    rounds = sorted(int(p.name) for p in (run_dir / "rounds").glob("*") if p.name.isdigit())
    return rounds[-1] if rounds else None


def _latest_run(runs_dir: Path, since: float) -> Path | None:
    """The run folder a failed flow left (its summary never came back): the newest one."""
    folders = [p for p in Path(runs_dir).glob("*") if (p / "run.json").exists()]
    newest = max(folders, key=lambda p: p.stat().st_mtime, default=None)
    return newest if newest and newest.stat().st_mtime >= time.time() - (time.perf_counter() - since) - 5 else None


def run_bench(cases: list[Case], core: str = "offline", repeats: int = 1, quick: bool = False,
              echo: Callable[[str], None] = print, epochs: int | None = None) -> dict:
    """Every case `repeats` times. With `quick`: data under <data folder>/bench-quick (small subsets, so the
    full datasets are untouched) and MEDBUILDER_TRAIN_TIME_LIMIT_S set short unless already set. With
    `epochs`: every training runs that many epochs (MEDBUILDER_TRAIN_EPOCHS), longer than the Model
    Trainer's own choice for the fixed costs to weigh less."""
    saved = {k: os.environ.get(k) for k in ("MEDBUILDER_DATA_DIR", "MEDBUILDER_TRAIN_TIME_LIMIT_S",
                                            "MEDBUILDER_TRAIN_EPOCHS", "MEDBUILDER_CACHE_DIR")}
    started = time.perf_counter()
    store = Path(tempfile.mkdtemp(prefix="medbuilder-bench-store-"))
    cache_check = None
    try:
        os.environ["MEDBUILDER_CACHE_DIR"] = str(store)  # a cold store: the first build preprocesses, as a new user's
        if quick:
            os.environ["MEDBUILDER_DATA_DIR"] = str(Path(_settings().data_dir).resolve() / "bench-quick")
            os.environ.setdefault("MEDBUILDER_TRAIN_TIME_LIMIT_S", str(QUICK_TRAIN_TIME_LIMIT_S))
        if epochs:
            os.environ["MEDBUILDER_TRAIN_EPOCHS"] = str(int(epochs))
        settings = _settings()
        prefect_start = start_prefect_server(echo)
        runs = []
        with progress.steps(len(cases) * repeats, "bench cases") as bar:  # its cases' bars under it
            for case in cases:
                for repeat in range(1, repeats + 1):
                    bar.update(bar.done, what=f"bench cases: {case.name} repeat {repeat}/{repeats}")
                    echo(f"[{case.name}] repeat {repeat}/{repeats}: {case.task} on {case.dataset} ({case.provenance})")
                    row = run_case(case, core, quick, echo)
                    row["repeat"] = repeat
                    runs.append(row)
                    ref = row.get("reference") or {}
                    echo(f"[{case.name}] {row['status']}; metric {row.get('value')} vs reference {ref.get('value')}"
                         + (f" (reference error: {ref['error'][:300]})" if ref.get("error") else ""))
                    bar()
        cache_check = second_build(cases, runs, core, quick, echo)
    finally:
        shutil.rmtree(store, ignore_errors=True)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _settings()
    return {"core": core, "repeats": repeats, "quick": quick, "tolerance": SUCCESS_TOLERANCE,
            "train_time_limit_s": settings.train_time_limit_s, "train_epochs": settings.train_epochs,
            "data_dir": str(settings.data_dir),
            "cases": [c.name for c in cases], "runs": runs, "cache_check": cache_check,
            "prefect_start_seconds": prefect_start, "seconds": round(time.perf_counter() - started, 1)}


def start_prefect_server(echo) -> float | None:
    """Without PREFECT_API_URL, every build in this process shares one temporary local Prefect server: start it
    before the first case, as `medbuilder up` starts one for many builds, and return its seconds (reported on
    their own, so the first case's fixed part holds the build's own work). None when a server is configured."""
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return None
    from prefect.server.api.server import SubprocessASGIServer

    started = time.perf_counter()
    SubprocessASGIServer().start()  # one per process (and port): the flows' clients find it running
    seconds = round(time.perf_counter() - started, 2)
    echo(f"local Prefect server up in {seconds:.1f} s (shared by every build of this bench)")
    return seconds


def second_build(cases: list[Case], runs: list[dict], core: str, quick: bool, echo) -> dict | None:
    """The first case built again on the store its first build filled (no reference run): data ready then
    and now, and its stages' seconds (the Prefect server already up, the imports warm)."""
    first = next((r for r in runs if r["case"] == cases[0].name and r.get("data_ready")), None) if cases else None
    if first is None:
        return None
    echo(f"[{cases[0].name}] the same build again, on the store the first one filled ...")
    again = run_case(cases[0], core, quick, echo, reference=False)
    if not again.get("data_ready"):
        return {"case": cases[0].name, "first": first["data_ready"], "second": None, "error": again.get("error")}
    ratio = _ratio(again["data_ready"]["seconds"], first["data_ready"]["seconds"])
    timed = {k: again.get(k) for k in ("case", "stages", "end_to_end_seconds", "fixed", "evaluation")}
    return {"case": cases[0].name, "first": first["data_ready"], "second": again["data_ready"], "ratio": ratio,
            "end_to_end_seconds": again.get("end_to_end_seconds"), "status": again.get("status"),
            "run": {**timed, "repeat": "again"}}
