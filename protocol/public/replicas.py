"""Generated miniature replicas of the public datasets' published layouts, for tests and demos.

Each replica has the published folder names, file names and table columns, a few tiny generated images,
and a GENERATED_REPLICA.txt that says so. Label rows are real where torchxrayvision ships the table
(NIH ChestX-ray14, CheXpert, PadChest; the IU-Xray report texts) and generated elsewhere. The builder
also returns what a correct indexing must find (per class, records, patients, split), computed from the
rows it wrote, not by the indexer.
"""

from __future__ import annotations

from pathlib import Path

from medbuilder.protocol.public import REPLICA_MARK, finding_words, template
from medbuilder.protocol.public import replicas_cxr, replicas_m3bench
from medbuilder.protocol.public.replica_base import Replica

BUILDERS = {**replicas_cxr.BUILDERS, **replicas_m3bench.BUILDERS}


def make_replica(name: str, target: Path, finding: str | None = None) -> Replica:
    """Write a generated replica of public dataset `name` into the new (or empty) folder `target`."""
    tpl = template(name)
    if name not in BUILDERS:
        raise KeyError(f"no replica is made for '{name}'")
    target = Path(target)
    if target.exists() and any(target.iterdir()):
        raise FileExistsError(f"{target} is not empty; give a new folder for the replica")
    target.mkdir(parents=True, exist_ok=True)
    words = finding_words(tpl, finding)
    replica = BUILDERS[name](target, words.get("finding"))
    (replica.root / REPLICA_MARK).write_text(
        f"GENERATED replica of the published layout of {tpl.title}, made by `medbuilder data replica`.\n"
        f"Its images are generated noise, not patients' images. Real label rows: {replica.real_rows or 'none'}.\n",
        encoding="utf-8")
    return replica

