"""`medbuilder watch`: poll the datacards folder (and optionally the data folder) and emit a Prefect event
for each new or changed datacard.

The event is ``medbuilder.datacard.changed`` on the resource ``medbuilder.datacard.<name>``; the
deployment ``build_model/on-datacard`` (``flows/deployments.py``) has a trigger on it that starts a
build of that dataset, with its gates waiting for a clinician in the Prefect UI or the dashboard.

Changes are found by comparing snapshots (modification time and size of each file; for the data
folder, one entry per top-level folder: file count, total size, newest mtime), so no extra dependency
is needed. The first snapshot is the baseline: files already there emit nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

DATACARD_EVENT = "medbuilder.datacard.changed"
RESOURCE_PREFIX = "medbuilder.datacard."
CARD_SUFFIXES = (".yaml", ".yml", ".json")

Snapshot = dict[str, tuple]


@dataclass(frozen=True)
class Change:
    path: str       # relative to the watched folder
    kind: str       # added | modified | removed


def snapshot_files(folder: Path, suffixes: tuple[str, ...] = CARD_SUFFIXES) -> Snapshot:
    """{file name: (mtime_ns, size)} of the folder's files with these suffixes (not recursive)."""
    snap: Snapshot = {}
    if not folder.is_dir():
        return snap
    for entry in os.scandir(folder):
        if entry.is_file() and entry.name.endswith(suffixes) and not entry.name.startswith("."):
            try:
                st = entry.stat()
            except FileNotFoundError:  # removed while we looked
                continue
            snap[entry.name] = (st.st_mtime_ns, st.st_size)
    return snap


def snapshot_tree(folder: Path) -> Snapshot:
    """{top-level entry: (file count, total size, newest mtime_ns)} of a data folder."""
    snap: Snapshot = {}
    if not folder.is_dir():
        return snap
    for top in os.scandir(folder):
        if top.name.startswith("."):
            continue
        count, size, newest = 0, 0, 0
        paths = [top.path] if top.is_file() else (os.path.join(root, f) for root, _, files in os.walk(top.path)
                                                   for f in files)
        for path in paths:
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue
            count, size, newest = count + 1, size + st.st_size, max(newest, st.st_mtime_ns)
        snap[top.name] = (count, size, newest)
    return snap


def diff(before: Snapshot, after: Snapshot) -> list[Change]:
    """What changed between two snapshots, sorted by path."""
    changes = [Change(p, "added") for p in after if p not in before]
    changes += [Change(p, "modified") for p in after if p in before and after[p] != before[p]]
    changes += [Change(p, "removed") for p in before if p not in after]
    return sorted(changes, key=lambda c: (c.path, c.kind))


_VERBS = {
    "diagnosis": "Classify {anatomy} {modality} images as {labels}",
    "segmentation": "Segment {labels} in {anatomy} {modality} images",
    "anomaly_detection": "Detect anomalies in {anatomy} {modality} images",
    "report_generation": "Write radiology reports for {anatomy} {modality} images",
}


def request_text(card) -> str:
    """A default request built from the card's first task (what the triggered build is asked to do)."""
    task = card.tasks[0].value
    labels = " or ".join(card.label_names) if card.label_names else "the findings"
    return _VERBS[task].format(anatomy=card.anatomy, modality=card.modality, labels=labels) + \
        f" ({card.dimension}, dataset {card.name})"


def card_event(folder: Path, change: Change) -> tuple[dict, dict] | None:
    """(resource, payload) of the event for a changed datacard; None when it is unreadable (logged)."""
    from medbuilder.protocol.registry import load_card

    card = load_card(folder / change.path)  # DatacardError names the field and the fix
    resource = {"prefect.resource.id": f"{RESOURCE_PREFIX}{card.name}", "prefect.resource.name": card.name}
    payload = {"file": str((folder / change.path).resolve()), "change": change.kind, "dataset": card.name,
               "tasks": [t.value for t in card.tasks], "request": request_text(card)}
    return resource, payload


def cards_for_data(datacards: Path, top: str) -> list[str]:
    """Datacard files whose dataset path starts at the data folder's entry `top`."""
    from medbuilder.protocol.registry import load_card

    found = []
    for name in sorted(snapshot_files(datacards)):
        try:
            card = load_card(datacards / name)
        except Exception:
            continue
        if not card.path.is_absolute() and card.path.parts and card.path.parts[0] == top:
            found.append(name)
    return found


def emit(resource: dict, payload: dict) -> None:
    from prefect.events import emit_event

    emit_event(event=DATACARD_EVENT, resource=resource, payload=payload)


class Watcher:
    """One poll at a time (`poll()`), so tests and the loop share the logic."""

    def __init__(self, datacards: Path, data: Path | None = None, send: Callable[[dict, dict], None] = emit,
                 echo: Callable[[str], None] = print):
        self.datacards, self.data, self.send, self.echo = Path(datacards), data and Path(data), send, echo
        self.cards = snapshot_files(self.datacards)
        self.tree = snapshot_tree(self.data) if self.data else {}

    def poll(self) -> list[dict]:
        """Emit one event per added or modified datacard (or data folder); returns the payloads sent."""
        sent = []
        cards, changes = snapshot_files(self.datacards), []
        changes += [(c, c.kind) for c in diff(self.cards, cards)]
        self.cards = cards
        if self.data:
            tree = snapshot_tree(self.data)
            for change in diff(self.tree, tree):
                if change.kind == "removed":
                    self.echo(f"data folder {change.path} removed")
                    continue
                for name in cards_for_data(self.datacards, change.path):
                    changes.append((Change(name, "modified"), f"data-{change.kind}"))
            self.tree = tree
        for change, kind in changes:
            if change.kind == "removed":
                self.echo(f"datacard {change.path} removed (no event)")
                continue
            try:
                resource, payload = card_event(self.datacards, change)
            except Exception as err:
                self.echo(f"datacard {change.path} {kind} but not valid, no event: {err}")
                continue
            payload["change"] = kind
            self.send(resource, payload)
            self.echo(f"datacard {change.path} {kind}: emitted {DATACARD_EVENT} for {resource['prefect.resource.id']}")
            sent.append(payload)
        return sent


def watch(datacards: Path, data: Path | None = None, interval: float = 2.0, echo: Callable[[str], None] = print,
          polls: int | None = None) -> None:
    """Poll every `interval` seconds until interrupted (or `polls` times)."""
    watcher = Watcher(datacards, data, echo=echo)
    where = f"{datacards}" + (f" and {data}" if data else "")
    echo(f"watching {where} every {interval:g} s ({len(watcher.cards)} datacards now); "
         f"new or changed datacards emit {DATACARD_EVENT}")
    n = 0
    while polls is None or n < polls:
        time.sleep(interval)
        watcher.poll()
        n += 1


def main(argv: list[str] | None = None) -> None:
    from medbuilder.settings import get_settings

    parser = argparse.ArgumentParser(prog="python -m medbuilder.stack.watch", description=__doc__.split("\n")[0])
    parser.add_argument("--datacards", type=Path, default=None)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--interval", type=float, default=2.0)
    args = parser.parse_args(argv)
    settings = get_settings()
    echo = lambda line: print(line, flush=True)  # noqa: E731
    try:
        watch(args.datacards or settings.datacards_dir, args.data, args.interval, echo=echo)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    main(sys.argv[1:])
