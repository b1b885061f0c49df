"""`medbuilder bench scale`: time and peak memory of a build, and of the preprocessed store, against dataset size.

Each point is one build (`medbuilder build ... --approve auto`, offline core) in its own process on a
cold store, its whole process tree's memory sampled (summed PSS, ``memory.py``); then the store is
filled again for the delivered workspace by :mod:`cache_probe` in a process of its own (fill time,
its peak memory, the warm read, the size on disk). Every training runs the same epochs, so the
points differ only in the number of images. Growth between points is the exponent b of
seconds ~ images^b (1: linear).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from medbuilder.bench import scale_data
from medbuilder.bench.memory import TreeMemory

DEFAULT_SIZES = (500, 1000, 3000)
DEFAULT_GENERATED = (2000, 20_000)
BUILD_TIMEOUT_S = 3600


@dataclass(frozen=True)
class Point:
    name: str
    dataset: str  # the datacard
    request: str
    provenance: str
    asked: int  # images asked for


def points(sizes: list[int], generated: list[int]) -> list[Point]:
    return ([Point(f"br35h-{n}", "br35h", scale_data.BR35H_REQUEST, "real", n) for n in sorted(sizes)]
            + [Point(f"generated-{n}", scale_data.GENERATED_NAME, scale_data.GENERATED_REQUEST, "generated", n)
               for n in sorted(generated)])


def run_build(point: Point, env: dict, log: Path) -> dict:
    """`medbuilder build` in a child process: its wall seconds, the tree's peak memory and the run folder."""
    cmd = [sys.executable, "-c", "from medbuilder.cli import main; main()", "build", point.request,
           "--dataset", point.dataset, "--core", "offline", "--approve", "auto"]
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with log.open("w") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, text=True)
        with TreeMemory(process.pid) as memory:
            try:
                code = process.wait(timeout=BUILD_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait()
    seconds = time.perf_counter() - started
    run_dir = next((line.split(":", 1)[1].strip() for line in log.read_text().splitlines()
                    if line.startswith("run_dir:")), None)
    return {"exit": code, "seconds": round(seconds, 2), "peak_tree_mib": round(memory.peak_bytes / 2**20, 1),
            "peak_rss_sum_mib": round(memory.peak_rss_bytes / 2**20, 1),
            "run_dir": run_dir, "log": str(log)}


def build_figures(run_dir: Path) -> dict:
    """What the run folder says: stages, data preparation, training run, evaluation, the trained images."""
    from medbuilder.bench.run import data_ready, stage_table, training_run_seconds
    from medbuilder.bench.timing import evaluation_seconds

    metrics_file = run_dir / "rounds" / "0" / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    return {"stages": {k: v.get("seconds") for k, v in stage_table(run_dir).items()},
            "data_ready": data_ready(run_dir, metrics), "training_run_seconds": training_run_seconds(run_dir),
            "evaluation": evaluation_seconds(run_dir),
            **{k: metrics.get(k) for k in ("n_train", "n_test", "epochs", "images_per_second", "metric", "value")}}


def probe_cache(run_dir: Path, env: dict, scratch: Path) -> dict:
    """The store filled again for the run's delivered workspace, in a process of its own, on an empty store."""
    from medbuilder.protocol.run_folder import RunFolder

    run = RunFolder(run_dir)
    workspace = scratch / "workspace"
    workspace.mkdir(parents=True)
    for item in run.workspace.iterdir():  # the code, config.json and the index; no checkpoints, no links
        if item.is_file() and not item.is_symlink() and item.suffix in (".py", ".json"):
            shutil.copyfile(item, workspace / item.name)
    shutil.copytree(run.index_dir, workspace / "index", symlinks=True)
    store = scratch / "store"
    cmd = [sys.executable, "-m", "medbuilder.bench.cache_probe", "--workspace", str(workspace),
           "--task", run.plan().task, "--index-dir", str(workspace / "index"),
           "--dataset-root", str(run.dataset_root)]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**env, "MEDBUILDER_CACHE_DIR": str(store)},
                          timeout=BUILD_TIMEOUT_S)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        return {"error": f"exit {done.returncode}: {(done.stderr or done.stdout)[-800:]}"}
    return json.loads(lines[-1])


def prepare_point(point: Point, data_dir: Path, cards_dir: Path, echo) -> int:
    if point.provenance == "generated":
        return scale_data.generated_set(data_dir, cards_dir, point.asked, echo)[1]
    return scale_data.br35h_subset(data_dir, point.asked)[1]


def run_point(point: Point, out: Path, epochs: int, echo) -> dict:
    data_dir, cards_dir = out / "data" / point.name, out / "datacards" / point.name
    started = time.perf_counter()
    images = prepare_point(point, data_dir, cards_dir, echo)
    row = {"point": point.name, "dataset": point.dataset, "provenance": point.provenance, "images": images,
           "data_seconds": round(time.perf_counter() - started, 1)}
    scratch = Path(tempfile.mkdtemp(prefix="medbuilder-scale-"))
    env = {**os.environ, "MEDBUILDER_DATA_DIR": str(data_dir.resolve()),
           "MEDBUILDER_RUNS_DIR": str((out / "runs").resolve()), "MEDBUILDER_CACHE_DIR": str(scratch / "build-store"),
           "MEDBUILDER_TRAIN_EPOCHS": str(epochs), "MEDBUILDER_ECHO_SCRIPTS": "false"}
    if point.provenance == "generated":
        env["MEDBUILDER_DATACARDS_DIR"] = str(cards_dir.resolve())
    try:
        echo(f"[{point.name}] build on {images} images ({point.provenance}) ...")
        row["build"] = run_build(point, env, out / "logs" / f"{point.name}.log")
        run_dir = Path(row["build"]["run_dir"]) if row["build"]["run_dir"] else None
        if run_dir is None or not (run_dir / "rounds" / "0").is_dir():
            row["error"] = f"the build did not train (exit {row['build']['exit']}); see {row['build']['log']}"
            return row
        row.update(build_figures(run_dir))
        echo(f"[{point.name}] build {row['build']['seconds']:.0f} s, peak {row['build']['peak_tree_mib']:.0f} MiB; "
             "the store on its own ...")
        row["cache"] = probe_cache(run_dir, env, scratch / "probe")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return row


def run_scale(sizes: list[int], generated: list[int], out: Path, epochs: int, echo=print) -> dict:
    started = time.perf_counter()
    rows = [run_point(p, Path(out), epochs, echo) for p in points(sizes, generated)]
    results = {"epochs": epochs, "rows": rows, "growth": growth(rows),
               "seconds": round(time.perf_counter() - started, 1)}
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "scale.json").write_text(json.dumps(results, indent=1))
    (Path(out) / "scale.md").write_text(render(results) + "\n")
    return results


def exponent(n0: float, y0: float | None, n1: float, y1: float | None) -> float | None:
    """b in y ~ n^b between two points (None when a value is missing or not positive)."""
    if not y0 or not y1 or y0 <= 0 or y1 <= 0 or n0 <= 0 or n1 <= 0 or n0 == n1:
        return None
    return round(math.log(y1 / y0) / math.log(n1 / n0), 2)


GROWTH_FIGURES = {"build seconds": lambda r: (r.get("build") or {}).get("seconds"),
                  "build peak memory": lambda r: (r.get("build") or {}).get("peak_tree_mib"),
                  "training run": lambda r: r.get("training_run_seconds"),
                  "store fill seconds": lambda r: (r.get("cache") or {}).get("fill_seconds"),
                  "store fill memory": lambda r: _above((r.get("cache") or {}).get("peak_mib"),
                                                        (r.get("cache") or {}).get("before_mib")),
                  "store size": lambda r: (r.get("cache") or {}).get("store_mib")}


def _above(peak: float | None, before: float | None) -> float | None:
    """The fill's own memory: the process's peak above what it held after its imports."""
    return None if peak is None or before is None else peak - before


def growth(rows: list[dict]) -> list[dict]:
    """For each pair of consecutive points of one dataset that both built: the exponent of each figure (across
    datasets the images differ, so no exponent is taken there)."""
    done = [r for r in rows if r.get("build") and not r.get("error")]
    return [{"from": a["point"], "to": b["point"],
             **{name: exponent(a["images"], get(a), b["images"], get(b)) for name, get in GROWTH_FIGURES.items()}}
            for a, b in zip(done, done[1:]) if a["dataset"] == b["dataset"]]


def _cell(value, fmt: str = "{:.1f}") -> str:
    return fmt.format(value) if isinstance(value, (int, float)) else "-"


def build_cells(r: dict) -> list[str]:
    build, stages = r.get("build") or {}, r.get("stages") or {}
    evaluation = sum(e.get("evaluation") or 0 for e in r.get("evaluation") or []) or None
    return [f"{r['point']} ({r['provenance']})", str(r["images"]), f"{r.get('n_train', '-')}/{r.get('n_test', '-')}",
            _cell(build.get("seconds")), _cell(build.get("peak_tree_mib"), "{:.0f}"),
            _cell(stages.get("data_engineer")), _cell(stages.get("module_architect")),
            _cell((r.get("data_ready") or {}).get("preprocess_seconds")), _cell(r.get("training_run_seconds")),
            _cell(evaluation)]


def store_cells(r: dict) -> list[str]:
    cache = r.get("cache") or {}
    return [r["point"], str(r["images"]), _cell(cache.get("fill_seconds")), _cell(cache.get("peak_mib"), "{:.0f}"),
            _cell(cache.get("before_mib"), "{:.0f}"), _cell(cache.get("read_seconds")),
            _cell(cache.get("store_mib"))]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|---" * len(header) + "|", *("| " + " | ".join(r) + " |" for r in rows)]


def render(results: dict) -> str:
    rows = results["rows"]
    lines = [f"Scale curve: every build trains {results['epochs']} epochs on a cold store (offline core, automatic "
             "approvals); peak memory is the build's whole process tree (flow, Prefect server, sandboxed scripts, "
             "forked workers), summed PSS sampled every 5 s (a page shared by n processes counts 1/n in each); its summed "
             "RSS, sampled every 0.25 s, is in scale.json.", "",
             *_table(["point", "images", "train/test", "build s", "peak MiB", "data engineer s", "module architect s",
                      "of which store fill s", "training run s", "evaluation s"], [build_cells(r) for r in rows]),
             "", "The store filled again for the delivered configuration, in a process of its own on an empty store "
             "(its imports made first), then read back:", "",
             *_table(["point", "images", "fill s", "peak MiB", "MiB before the fill", "read s", "store MiB"],
                     [store_cells(r) for r in rows])]
    lines += [f"- {r['point']}: {r.get('error') or 'store: ' + r['cache']['error']}"
              for r in rows if r.get("error") or (r.get("cache") or {}).get("error")]
    if results["growth"]:
        names = list(GROWTH_FIGURES)
        lines += ["", "Growth, b in figure ~ images^b (1 = linear), between points of one dataset:", "",
                  *_table(["from -> to", *names],
                          [[f"{g['from']} -> {g['to']}", *(_cell(g[n], "{:.2f}") for n in names)]
                           for g in results["growth"]])]
    return "\n".join(lines)
