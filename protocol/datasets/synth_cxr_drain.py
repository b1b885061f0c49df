"""GENERATED chest-radiograph-like images with a planted shortcut: pneumothorax vs normal, chest drains.

Layout::

    synth-cxr-drain/
      labels.csv              image, finding, split, drain, drain_mask, counterfactual (one row per image)
      images/cxr_drain_0000.png   128x128 grayscale PNG; 400 train + 200 test, classes balanced
      masks/cxr_drain_0000.png    0/255 mask of the drain (for images without one: of the twin's drain)
      twins/cxr_drain_0000.png    the same image with the drain toggled (added if absent, removed if present)

Case i is a :mod:`.cxr_phantom` "normal" chest drawn with ``numpy.random.default_rng(SEED + i)``;
cases 0-399 are train, 400-599 test, and the finding alternates normal / pneumothorax. The
k-th case of a class in a split has a drain by a fixed rule (:func:`has_drain`): in train the
drain agrees with the label (drain <=> pneumothorax) in 9 of every 10 cases, in test in 5 of
every 10, so a model that learnt the drain looks good in train and drops to chance in test.
Any subset (``limit``, a multiple of 10 per class and split) keeps these rates exactly.
"""

from __future__ import annotations

import csv
import io
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage

from medbuilder.protocol.datacard import Task
from medbuilder.protocol.datasets.base import Item, Recipe, check_root, check_task, png
from medbuilder.protocol.datasets.cxr_phantom import draw
from medbuilder.protocol.index import DataIndex, IndexRecord

SEED = 3000
FINDINGS = ("normal", "pneumothorax")
PER_CLASS = {"train": 200, "test": 100}
FIRST = {"train": 0, "test": 2 * PER_CLASS["train"]}  # global number of each split's first case
COLUMNS = ("image", "finding", "split", "drain", "drain_mask", "counterfactual")
TUBE_LEVEL = 230  # grey value of the tube


def has_drain(finding: str, split: str, k: int) -> bool:
    """The drain rule for the k-th case of ``finding`` in ``split`` (agreement 90% train, 50% test)."""
    agrees = k % 10 != 9 if split == "train" else k % 2 == 0
    return agrees == (finding == "pneumothorax")


def cases(limit: int | None) -> list[tuple[int, str, str, int]]:
    """(global number, split, finding, k-th of its class in the split) for every planned image."""
    out = []
    for split, per_class in PER_CLASS.items():
        n = min(per_class, limit) if limit else per_class
        out += [(FIRST[split] + 2 * k + j, split, finding, k) for k in range(n) for j, finding in enumerate(FINDINGS)]
    return out


# ------------------------------------------------------------------ drawing

def _smooth(img: np.ndarray) -> np.ndarray:
    return ndimage.gaussian_filter(img.astype(float), 1.0)


def _body(smooth: np.ndarray) -> np.ndarray:
    """The body outline, filled: brighter than half the median of the non-background pixels."""
    return ndimage.binary_fill_holes(smooth > 0.5 * np.median(smooth[smooth > 40]))


def _lungs(img: np.ndarray) -> list[np.ndarray]:
    """The two lung fields (image-left first), found in the drawing since ``draw`` does not return them:
    the two largest dark regions inside the body."""
    smooth = _smooth(img)
    body = _body(smooth)
    dark = body & (smooth < 0.5 * (np.median(smooth[body]) + np.percentile(smooth[body], 5)))
    dark = ndimage.binary_opening(dark, iterations=1)
    labels, n = ndimage.label(dark)
    sizes = ndimage.sum(dark, labels, range(1, n + 1))
    two = [labels == i + 1 for i in np.argsort(sizes)[-2:]]
    return sorted(two, key=lambda m: np.nonzero(m)[1].mean())


def _pneumothorax(img: np.ndarray, lung: np.ndarray, sign: int, rng: np.random.Generator) -> np.ndarray:
    """Collapse the lateral/apical rim of ``lung``: a dark rim without markings, a bright pleural line.

    ``sign`` is -1 for the lung on the image's left (its lateral side is towards x = 0).
    The rim is thickest at the apex and tapers towards the base; its width is 10-20% of the lung width.
    """
    ys, xs = np.nonzero(lung)
    top, bottom = ys.min(), ys.max()
    width = xs.max() - xs.min() + 1
    depth = rng.uniform(0.10, 0.20) * width
    yy, xx = np.mgrid[0:lung.shape[0], 0:lung.shape[1]]
    t = (yy - top) / max(bottom - top, 1)
    centre = np.array([xs[ys == y].mean() if (ys == y).any() else 0 for y in range(lung.shape[0])])[:, None]
    lateral = (sign * (xx - centre) > 0) | (t < 0.2)
    inside = ndimage.distance_transform_edt(lung)
    rim = lung & lateral & (t < 0.85) & (inside <= depth * (1 - 0.6 * t))
    line = ndimage.binary_dilation(rim) & lung & ~rim
    lung_level = np.median(img[lung & ~rim])
    target = img.astype(float)
    target[rim] = 0.55 * lung_level + rng.normal(0, 2.0, rim.sum())
    target[line] = lung_level + 45
    delta = ndimage.gaussian_filter(target - img, 0.6)
    return np.clip(img + delta, 0, 255).round().astype(np.uint8)


def _curve(p0, p1, p2, n: int = 400) -> np.ndarray:
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) ** 2 * np.asarray(p0) + 2 * t * (1 - t) * np.asarray(p1) + t ** 2 * np.asarray(p2)


def _drain(img: np.ndarray, lungs: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Soft coverage (0-1) of a tube from the lateral chest wall curving up into one lung field."""
    side = int(rng.integers(2))
    lung, sign = lungs[side], (-1, 1)[side]
    ys, xs = np.nonzero(lung)
    top, bottom = ys.min(), ys.max()
    y0 = top + rng.uniform(0.45, 0.8) * (bottom - top)
    wall = np.nonzero(_body(_smooth(img))[int(round(y0))])[0]
    x0 = (wall.min() if sign < 0 else wall.max()) + sign * rng.uniform(-3, 3)  # just outside or inside the skin
    y2 = top + rng.uniform(0.1, 0.4) * (bottom - top)
    row = xs[ys == int(round(y2))]
    x2 = row.mean() + rng.uniform(-0.25, 0.25) * (row.max() - row.min())
    bend = rng.uniform(-0.3, 0.3) * np.hypot(x2 - x0, y2 - y0)
    p1 = ((x0 + x2) / 2 + bend, (y0 + y2) / 2 + abs(bend) * 0.5 + rng.uniform(0, 8))
    points = np.clip(_curve((x0, y0), p1, (x2, y2)).round().astype(int), 0, img.shape[0] - 1)
    seeds = np.ones(img.shape, bool)
    seeds[points[:, 1], points[:, 0]] = False
    dist = ndimage.distance_transform_edt(seeds)
    radius = rng.uniform(0.8, 1.3)  # a 2-3 px wide tube
    return np.clip(radius + 0.5 - dist, 0, 1)


@lru_cache(maxsize=None)
def _case(i: int, finding: str, drain: bool) -> tuple[bytes, bytes, bytes]:
    """(image, mask, twin) PNG bytes of case ``i``: the twin has the drain toggled."""
    rng = np.random.default_rng(SEED + i)
    base, _ = draw("normal", rng)
    lungs = _lungs(base)
    if finding == "pneumothorax":
        side = int(rng.integers(2))
        base = _pneumothorax(base, lungs[side], (-1, 1)[side], rng)
    cover = _drain(base, lungs, rng)
    with_drain = np.clip(base + cover * (TUBE_LEVEL - base.astype(float)), 0, 255).round().astype(np.uint8)
    mask = np.where(cover > 0, 255, 0).astype(np.uint8)
    image, twin = (with_drain, base) if drain else (base, with_drain)
    return png(image), png(mask), png(twin)


# ------------------------------------------------------------------ recipe

def _stem(i: int) -> str:
    return f"cxr_drain_{i:04d}"


def _row(i: int, split: str, finding: str, k: int) -> dict:
    stem = _stem(i)
    return {"image": f"images/{stem}.png", "finding": finding, "split": split,
            "drain": int(has_drain(finding, split, k)), "drain_mask": f"masks/{stem}.png",
            "counterfactual": f"twins/{stem}.png"}


def rows(limit: int | None) -> list[dict]:
    """The labels.csv rows (cheap: nothing is drawn)."""
    return [_row(*c) for c in cases(limit)]


def _labels(limit: int | None) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows(limit))
    return buf.getvalue().encode("utf-8")


def plan(limit: int | None) -> list[Item]:
    items = [Item("labels.csv", make=lambda: _labels(limit))]
    for i, split, finding, k in cases(limit):
        drawn = (i, finding, has_drain(finding, split, k))
        items += [Item(f"{folder}/{_stem(i)}.png", make=lambda d=drawn, j=j: _case(*d)[j])
                  for j, folder in enumerate(("images", "masks", "twins"))]
    return items


def index(root: Path, task: Task) -> DataIndex:
    root = check_root(RECIPE, root, "labels.csv", "images", "masks", "twins")
    with open(root / "labels.csv", newline="", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    splits = {"train": [], "test": []}
    for row in table:
        drain = row["drain"] == "1"
        splits[row["split"]].append(IndexRecord(
            image=str(root / row["image"]), label=row["finding"], confounder=drain,
            confounder_mask=str(root / row["drain_mask"]), counterfactual=str(root / row["counterfactual"]),
            group="drain" if drain else "no-drain"))
    return DataIndex(task=task, train=splits["train"], test=splits["test"],
                     label_dict={f: i for i, f in enumerate(FINDINGS)})


RECIPE = Recipe(
    name="synth-cxr-drain",
    version="1",
    summary="GENERATED chest-radiograph-like PNGs, pneumothorax vs normal, with a chest-drain shortcut "
            "(90% agreement in train, 50% in test), drain masks and drain-toggled twins",
    tasks=(Task.diagnosis,),
    generated=True,
    source="generated by medbuilder.protocol.datasets.synth_cxr_drain (numpy seeds 3000-3599)",
    plan=plan,
    sources=lambda: [],
    index=lambda root, task: index(root, check_task(RECIPE, task)),
    limit_note="limit: the first N images of each class in each split (a multiple of 10 keeps the rates exact)",
)
