"""How much a trained classifier relies on acquisition properties, measured on the fixed test split.

The acquisition check (metadata_audit.py) says whether the files' metadata alone predict the label. This
says whether the model uses them, two ways:

- **AUROC within metadata strata.** The metadata forest, fitted on the training split, scores every test
  image; the test images are cut into equal-count strata of that score (about ``PER_STRATUM`` images each,
  at most ``STRATA``), and the model's
  AUROC is computed inside each stratum that holds both classes, pooled weighted by its positive-negative
  pairs. Inside a stratum the metadata barely differ, so a model that reads only them falls toward 0.5 there,
  while one that reads the anatomy keeps its AUROC.
- **Counterfactual flips.** Each test image (up to ``MAX_CASES``, a seeded sample) is changed only in an
  acquisition property, at the file's own resolution, before the model's own preprocessing: *re-padded*
  with dark borders to the other class's typical aspect ratio, and *resampled* to the other class's
  typical original size (width and height of its most common file in the training split). The share
  whose predicted class changes, and the mean change in the positive-class score.

Each changed image is prepared in memory as the PNG holding it would be (``pictures.py``); a few examples
are written as PNGs and kept in ``report/round-<k>/acquisition_counterfactuals/``. Each changed image,
prepared, is kept in the store beside the image's own entry, so a later round or build with the same
preprocessing reads it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medbuilder.review.acquisition import FEATURES_FILE, feature_matrix, features_of, metadata_forest
from medbuilder.review.metrics import auroc

if TYPE_CHECKING:
    import torch

STRATA = 20  # at most; about 25 test images per stratum
PER_STRATUM = 25
MAX_CASES = 100
KEPT_EXAMPLES = 4
KINDS = ("re-padded", "resampled")


def feature_rows(run, images: list[str]) -> list[dict]:
    """Each image's acquisition features: from the audit's file where it has them, else read now."""
    known = run.read_json(FEATURES_FILE) if run.exists(FEATURES_FILE) else {}
    missing = [image for image in images if not known.get(image)]
    known.update(zip(missing, features_of(missing)))
    return [known[image] for image in images]


def metadata_scores(run, train: list[dict], test: list[dict], positive: str) -> np.ndarray | None:
    """The metadata forest's positive-class score of each test record (fitted on the training split)."""
    rows = feature_rows(run, [str(r["image"]) for r in train + test])
    y = np.array([str(r["label"]) == positive for r in train])
    if all("error" in row for row in rows):
        return None
    x, _ = feature_matrix([row if "error" not in row else {} for row in rows])
    if x.shape[1] == 0 or len(set(y.tolist())) < 2:
        return None
    forest = metadata_forest(0).fit(x[:len(train)], y)
    return forest.predict_proba(x[len(train):])[:, 1]


def stratified_auroc(y: np.ndarray, model_score: np.ndarray, meta_score: np.ndarray) -> dict:
    """The model's AUROC inside equal-count strata of the metadata score, pooled by pairs."""
    order = np.argsort(meta_score, kind="stable")
    strata, pooled, pairs = [], 0.0, 0
    for members in np.array_split(order, int(np.clip(len(y) // PER_STRATUM, 1, STRATA))):
        pos, neg = int(y[members].sum()), int((~y[members]).sum())
        scores = meta_score[members]
        row = {"n": int(len(members)), "positives": pos,
               "metadata_score": [round(float(scores.min()), 3), round(float(scores.max()), 3)]}
        if pos and neg:
            row["auroc"] = round(auroc(y[members], model_score[members]), 4)
            pooled += row["auroc"] * pos * neg
            pairs += pos * neg
        strata.append(row)
    usable = sum(1 for row in strata if "auroc" in row)
    value = round(pooled / pairs, 4) if usable >= 2 else None
    reason = None if value is not None else "fewer than two strata of the metadata score hold both classes"
    overall, on_metadata = auroc(y, model_score), auroc(y, meta_score)
    return {"value": value, "reason": reason, "strata": strata,
            "overall": round(overall, 4) if overall is not None else None,
            "metadata_auroc_on_test": round(on_metadata, 4) if on_metadata is not None else None}


def _typical(rows: list[dict], labels: list[str], cls: str) -> tuple[int, int] | None:
    sizes = Counter((int(r["width"]), int(r["height"])) for r, label in zip(rows, labels)
                    if label == cls and "width" in r and "height" in r)
    return sizes.most_common(1)[0][0] if sizes else None


def repad(image, aspect: float):
    """The image centred on a dark canvas of aspect ratio `aspect` (width / height), never cropped."""
    from PIL import Image

    w, h = image.size
    if abs(w / h - aspect) < 0.05 * aspect:
        aspect = aspect * 1.3  # the other class's shape is this one's: pad wider still
    canvas = (max(w, round(h * aspect)), max(h, round(w / aspect)))
    out = Image.new(image.mode, canvas, 0)
    out.paste(image, ((canvas[0] - w) // 2, (canvas[1] - h) // 2))
    return out


def resample(image, size: tuple[int, int]):
    """The image resampled to another original size (half its own when that size is its own)."""
    from PIL import Image

    if tuple(image.size) == tuple(size):
        size = (max(8, size[0] // 2), max(8, size[1] // 2))
    return image.resize(size, Image.BILINEAR)


def _variants(predictor, images: list[str], others: list[tuple[int, int]], examples: int,
              folder: Path) -> list[dict]:
    """Per image, {kind: (the changed copy prepared, its PNG file or None)}; the first `examples` images'
    copies are also written as PNGs to `folder` (for a reviewer), the others are prepared in memory."""
    from medbuilder.review.per_image import process_map
    from medbuilder.review.pictures import prepare_picture

    def changed(i: int) -> dict:
        pictures = _changed_pictures(images[i], others[i])
        out = {}
        for kind, picture in pictures.items():
            target = folder / kind / f"{i:04d}.png"
            if i < examples:
                target.parent.mkdir(parents=True, exist_ok=True)
                picture.save(target, compress_level=1)  # lossless; level 1 is ten times faster to write
            out[kind] = (prepare_picture(predictor, picture, target), str(target) if i < examples else None)
        return out

    with process_map() as each:
        return list(each(changed, range(len(images))))


def _prepared_variants(predictor, images: list[str], labels: list[str], positive: str, typical: dict,
                       folder: Path) -> tuple[dict, dict]:
    """({kind: [(original, changed image prepared)]}, {kind: [(original, changed file)]} of the examples).

    A changed image prepared by an earlier round or build with the same preprocessing is read from the store
    (``StoredVariants``); the others are made and prepared now, and stored. The first KEPT_EXAMPLES images
    are always made and written as PNGs to `folder`: their files are the examples a reviewer opens."""
    from medbuilder.cache.host_memo import source_digest
    from medbuilder.cache.lookup import StoredVariants

    others = [typical.get("negative" if label == positive else "positive") for label in labels]
    shelves: dict[tuple, StoredVariants] = {}
    for other in {o for o in others if o is not None}:
        mine = [path for path, o in zip(images, others) if o == other]
        for kind in KINDS:
            what = f"{kind} to the file shape {other[0]} x {other[1]} (code {source_digest(__file__)})"
            shelves[kind, other] = StoredVariants(predictor, what, mine)
    found = {(i, kind): image for i, other in enumerate(others) if other is not None and i >= KEPT_EXAMPLES
             for kind in KINDS if (image := shelves[kind, other].get(images[i])) is not None}
    to_make = [i for i, other in enumerate(others) if other is not None and any((i, k) not in found for k in KINDS)]
    examples = sum(1 for i in to_make if i < KEPT_EXAMPLES)  # to_make is in order: these come first
    files: dict[str, list[tuple[str, str]]] = {kind: [] for kind in KINDS}
    made_now = _variants(predictor, [images[i] for i in to_make], [others[i] for i in to_make], examples, folder)
    for i, changed in zip(to_make, made_now):
        for kind, (image, file) in changed.items():
            found[i, kind] = image
            shelves[kind, others[i]].put(images[i], image)
            if file:
                files[kind].append((images[i], file))
    made = {kind: [(images[i], found[i, kind]) for i in range(len(images)) if (i, kind) in found] for kind in KINDS}
    return made, files


def _changed_pictures(path: str, other: tuple[int, int]) -> dict:
    """The image re-padded to the other class's typical shape and resampled to its size (PIL images, in
    the mode its PNG would have); none when the file cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("L" if im.mode not in ("RGB", "L") else im.mode)
            return {"re-padded": repad(im, other[0] / other[1]), "resampled": resample(im, other)}
    except (OSError, ValueError):
        return {}


def _flips(predictor, pairs: list[tuple[str, torch.Tensor]]) -> dict:
    """(original file, its changed copy prepared) pairs: the share whose class changes."""
    import torch

    from medbuilder.review import saliency, shortcuts

    if not pairs:
        return {"value": None, "n": 0}
    p0 = saliency.class_probabilities(predictor, shortcuts.prepare_all(predictor, [a for a, _ in pairs]))
    p1 = saliency.class_probabilities(predictor, torch.stack([b for _, b in pairs]))
    flips = (p0.argmax(1) != p1.argmax(1)).float()
    delta = (p0[:, predictor.positive] - p1[:, predictor.positive]).abs()
    out = {"value": round(float(flips.mean()), 4), "n": len(pairs),
           "mean_abs_score_change": round(float(delta.mean()), 4)}
    if len(set(p0.argmax(1).tolist()) | set(p1.argmax(1).tolist())) == 1:
        out.update(value=None, reason="the model gives one class to every image and its changed copy: no flip "
                                      "could show")
    return out


def measure(run, predictor, train: list[dict], test: list[dict], scores: dict[str, float], out_dir: Path,
            seed: int = 0) -> dict:
    """Both measures for a binary model; {"value": None, "reason"} when they cannot be made."""
    if predictor.positive is None:
        return {"reason": "measured for binary models only"}
    positive = predictor.names[predictor.positive]
    test = [r for r in test if str(r["image"]) in scores]
    y = np.array([str(r["label"]) == positive for r in test])
    meta = metadata_scores(run, train, test, positive)
    result = {"positive_label": positive}
    if meta is None or not 0 < y.sum() < len(y):
        result["stratified"] = {"value": None, "reason": "no acquisition feature could be read, or one class only"}
    else:
        result["stratified"] = stratified_auroc(y, np.array([scores[str(r["image"])] for r in test]), meta)
    rows = feature_rows(run, [str(r["image"]) for r in train])
    labels = [str(r["label"]) for r in train]
    negative = next((n for n in predictor.names.values() if n != positive), None)
    typical = {"positive": _typical(rows, labels, positive), "negative": _typical(rows, labels, negative)}
    picked = np.random.default_rng(seed).permutation(len(test))[:MAX_CASES]
    with tempfile.TemporaryDirectory(prefix="medbuilder-acq-") as tmp:
        made, files = _prepared_variants(predictor, [str(test[i]["image"]) for i in picked],
                                         [str(test[i]["label"]) for i in picked], positive, typical, Path(tmp))
        for kind, pairs in made.items():
            result[kind] = {**_flips(predictor, pairs), "made_from": typical}
        _keep_examples(files, out_dir / "acquisition_counterfactuals")
    return result


def _keep_examples(made: dict, folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    for kind, pairs in made.items():
        for original, changed in pairs[:KEPT_EXAMPLES]:
            target = folder / kind / f"{Path(original).stem}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(changed, target)


def summary_line(reliance: dict) -> str:
    """One sentence for the gates and the model card."""
    strat = reliance.get("stratified") or {}
    parts = []
    if strat.get("value") is not None:
        parts.append(f"among test images with similar metadata scores its AUROC is {strat['value']:.3f} against "
                     f"{strat['overall']:.3f} overall (a model that reads the anatomy keeps its AUROC there; one "
                     "that reads the metadata falls toward 0.5)")
    for kind in ("re-padded", "resampled"):
        m = reliance.get(kind) or {}
        if m.get("value") is not None:
            parts.append(f"{m['value']:.1%} of {m['n']} test images change class when {kind} to the other "
                         f"class's typical file shape (mean score change {m['mean_abs_score_change']:.3f}; 0 is "
                         "no reliance)")
    if parts:
        return "The model's own reliance on acquisition properties: " + "; ".join(parts) + "."
    reasons = sorted({m.get("reason") for m in (strat, reliance.get("re-padded") or {}, reliance.get("resampled") or {})
                      if m.get("reason")} | ({reliance["reason"]} if reliance.get("reason") else set()))
    return ("The model's own reliance on acquisition properties could not be measured: " + "; ".join(reasons) + ".") \
        if reasons else ""


def write(out_dir: Path, reliance: dict) -> None:
    (Path(out_dir) / "metadata_reliance.json").write_text(json.dumps(reliance, indent=1))


def for_round(run, snapshot: Path, out_dir: Path, predictor=None) -> dict:
    """The reliance of a trained binary round (its snapshot) on acquisition properties; written to out_dir.
    `predictor`: the snapshot's, when the caller loaded it (the test images it prepared are reused)."""
    from medbuilder.protocol.untrusted import read_text_nofollow
    from medbuilder.review.interpret import load_predictor
    from medbuilder.review.verified_metric import fixed_test_split, read_predictions

    predictor = predictor or load_predictor(run.workspace, snapshot)
    if predictor.positive is None:
        return {"reason": "measured for binary models only"}
    positive = predictor.names[predictor.positive]
    test, _ = fixed_test_split(run)
    train = json.loads(read_text_nofollow(run.index_dir, "train.json"))
    predictions, _ = read_predictions(Path(snapshot))
    scores = {str(p["image"]): float(p["probabilities"][positive]) for p in predictions}
    reliance = measure(run, predictor, train, test, scores, Path(out_dir))
    write(out_dir, reliance)
    return reliance
