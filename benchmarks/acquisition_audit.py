"""Seconds of the dataset gate's acquisition audit (metadata_audit.audit_records) on a class-folder dataset,
with nothing remembered: every file's features read, the forest cross-validated.

    python benchmarks/acquisition_audit.py [data/br35h] [--repeats 2]

Prints, per repeat, the seconds of the feature reading and of the whole audit, and the audit's AUROC and top
features (the second repeat in the same process has its imports warm).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def class_folder_records(root: Path) -> list[dict]:
    return [{"image": str(path), "label": folder.name}
            for folder in sorted(p for p in root.iterdir() if p.is_dir())
            for path in sorted(folder.rglob("*")) if path.suffix.lower() in IMAGE_SUFFIXES]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default="data/br35h", help="a folder with one subfolder per class")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    os.environ["MEDBUILDER_PREPROCESS_CACHE"] = "false"  # no remembered feature rows: every file is read
    from medbuilder.review import acquisition, metadata_audit

    records = class_folder_records(Path(args.root))
    labels = sorted({r["label"] for r in records})
    label_dict = {name: i for i, name in enumerate(labels)}
    print(f"{len(records)} images in {len(labels)} classes under {args.root}")
    for repeat in range(1, args.repeats + 1):
        started = time.perf_counter()
        acquisition.features_of([r["image"] for r in records])
        features_s = time.perf_counter() - started
        started = time.perf_counter()
        audit = metadata_audit.audit_records(records, label_dict, None)
        audit_s = time.perf_counter() - started
        top = ", ".join(t["feature"] for t in audit.get("top_features", [])[:3])
        print(f"repeat {repeat}: features {features_s:.2f} s; audit {audit_s:.2f} s (features again, "
              f"{audit.get('folds')}-fold forest); AUROC {audit.get('auroc')}; top features {top}")


if __name__ == "__main__":
    main()
