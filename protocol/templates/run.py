"""Run a filled workspace's ``train.py`` in a subprocess and return its metrics."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

TAIL_LINES = 40
OUTPUT_LOG = "train_output.log"


class TrainingError(RuntimeError):
    """train.py failed, timed out or wrote no metrics; carries the tail of its output."""

    def __init__(self, message: str, workspace: Path, returncode: int | None, tail: str):
        self.workspace, self.returncode, self.tail = workspace, returncode, tail
        super().__init__(f"{message}\n--- last lines of {workspace / OUTPUT_LOG} ---\n{tail}")


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM the training process group, then SIGKILL it if it lingers."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_training(workspace: Path | str, timeout_s: float | None = None, echo: bool = True,
                 config: str = "config.json") -> dict:
    """Run ``python train.py --config config.json`` with cwd=workspace and return metrics.json.

    Output is streamed line by line to stdout (echo=True) and saved to
    ``train_output.log``. A non-zero exit, a timeout (the whole process group is
    killed) or a missing metrics.json raises TrainingError with the output's tail.
    """
    workspace = Path(workspace).resolve()
    if not (workspace / "train.py").is_file():
        raise FileNotFoundError(f"{workspace / 'train.py'} not found: run fill_template(task, workspace, values) first")
    cfg = json.loads((workspace / config).read_text())
    metrics_path = workspace / (cfg.get("output_dir") or ".") / "metrics.json"
    if metrics_path.exists():
        metrics_path.unlink()  # never return a previous run's metrics
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    started = time.monotonic()
    with (workspace / OUTPUT_LOG).open("w") as log:
        proc = subprocess.Popen([sys.executable, "train.py", "--config", config], cwd=workspace, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                start_new_session=True)

        def pump() -> None:
            for line in proc.stdout:
                log.write(line)
                log.flush()
                tail.append(line.rstrip("\n"))
                if echo:
                    sys.stdout.write(line)
                    sys.stdout.flush()

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            reader.join(5)
            raise TrainingError(f"train.py in {workspace} exceeded timeout_s={timeout_s} and was stopped; "
                                f"lower epochs or max_train_items, or set time_limit_s in config.json",
                                workspace, None, "\n".join(tail)) from None
        except BaseException:
            _kill_group(proc)
            raise
        reader.join(10)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise TrainingError(f"train.py in {workspace} failed with exit code {proc.returncode} after {seconds:.0f}s",
                            workspace, proc.returncode, "\n".join(tail))
    if not metrics_path.exists():
        raise TrainingError(f"train.py in {workspace} exited 0 but wrote no {metrics_path.name}",
                            workspace, 0, "\n".join(tail))
    return json.loads(metrics_path.read_text())
