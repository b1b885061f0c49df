"""Shortcut measures on the test split: how much a trained model relies on a confounder.

The four measures named by ``protocol/objective.py`` (definitions: docs/shortcut_measures.md):

- ``attribution_share``: GradCAM mass inside the confounder (its mask), or outside the
  region of interest (roi confounders), over the total mass; mean over test images.
- ``subgroup_gap``: AUROC with the confounder present minus AUROC without it.
- ``counterfactual_flip_rate``: share of test cases whose predicted class changes when the
  image is replaced by its counterfactual twin (or, for roi confounders, by the image
  blanked outside the region).
- ``confounded_fpr``: false-positive rate on the negatives that show the confounder.

Plus calibration (reliability bins, ECE) and metrics per record ``group``. Each
measure returns ``{"value", "n", "reason", ...}``: value None with a reason when the
test data lacks what the measure needs. ``records`` are test predictions
(predictions.json entries) joined with the index's test records (confounder_mask,
counterfactual), see ``join_records``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from medbuilder.review import saliency
from medbuilder.review.metrics import auroc
from medbuilder.review.roi_blanking import blank_outside_roi

MEASURES = ("counterfactual_flip_rate", "attribution_share", "subgroup_gap", "confounded_fpr")
DEFINITIONS = {
    "counterfactual_flip_rate": "share of test cases whose predicted class changes when the image is replaced by "
                                "its counterfactual (the confounder toggled; roi: blanked outside the region)",
    "attribution_share": "mean over test images of the GradCAM mass inside the confounder mask (roi: outside the "
                         "region of interest) divided by the total GradCAM mass",
    "subgroup_gap": "AUROC on test cases with the confounder minus AUROC on those without it",
    "confounded_fpr": "false-positive rate on the test negatives that show the confounder",
}


def result(value: float | None, n: int, reason: str | None = None, **extra) -> dict:
    return {"value": None if value is None else float(value), "n": int(n), "reason": reason, **extra}


# ----------------------------------------------------------------------------- inputs


def join_records(predictions: list[dict], index_dir: Path) -> list[dict]:
    """Each prediction with its index record's optional fields (confounder, confounder_mask,
    counterfactual, group), matched by image path; the index's test.json may hold more records."""
    test_file = Path(index_dir) / "test.json"
    index = {}
    if test_file.is_file():
        for r in json.loads(test_file.read_text()):
            index[str(r["image"])] = r
    joined = []
    for p in predictions:
        r = index.get(str(p["image"]), {})
        extra = {k: r[k] for k in ("confounder", "confounder_mask", "counterfactual", "group")
                 if r.get(k) is not None and p.get(k) is None}
        joined.append({**p, **extra})
    return joined


def positive_of(records: list[dict], positive: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(label is positive, predicted positive, score) arrays for a binary model."""
    y = np.array([r["label"] == positive for r in records], dtype=bool)
    pred = np.array([r["prediction"] == positive for r in records], dtype=bool)
    score = np.array([float(r["score"]) for r in records], dtype=float)
    return y, pred, score


def prepare_all(predictor, paths: list[str]) -> torch.Tensor:
    """The prepared images, each read and preprocessed once per predictor (the measures, the
    counterfactuals and the saliency samples all ask for the same test images); those the build's
    preprocessing stored are read from medbuilder's store."""
    if not paths:
        return torch.zeros(0)
    from medbuilder.cache.lookup import stored_images

    cache = predictor.__dict__.setdefault("_prepared_by_path", {})
    cache.update(stored_images(predictor, [p for p in dict.fromkeys(paths) if p not in cache]))
    missing = [p for p in dict.fromkeys(paths) if p not in cache]
    if missing:
        from medbuilder.review.per_image import process_map

        with process_map() as each:
            cache.update(zip(missing, each(predictor.prepare, missing)))
    return torch.stack([cache[p] for p in paths])


# ----------------------------------------------------------------------------- masks through preprocessing


def load_mask(path: str) -> torch.Tensor:
    """A mask file as (1, *spatial) float {0, 1}, loaded the way the template loads images (MONAI's
    LoadImage: same orientation as the image); anything above half its maximum counts."""
    from monai.transforms import LoadImage

    m = torch.as_tensor(LoadImage(image_only=True, ensure_channel_first=True)(str(path))).float().mean(0, keepdim=True)
    top = float(m.max())
    return (m > 0.5 * top).float() if top > 0 else m


def prepare_with_mask(predictor, image_path: str, mask_path: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(prepared image, mask coverage) at the prepared size.

    The mask follows the image's geometry step by step: the predictor's own chain runs on the
    image, and each spatial step is repeated on the mask with the parameters the image used
    (CropForegroundd's box is computed on the image, not the mask; Resized with 'area', so a
    thin line becomes a fractional coverage instead of vanishing; SpatialPadd with zeros;
    KeepRoid's crop box from the image's region). Running the mask through the chain on its
    own would be wrong: CropForegroundd would crop it to the mask itself. A step that changes
    the image size and is not one of these raises ValueError rather than misalign.
    """
    mask = load_mask(mask_path)
    d: dict = {"image": str(image_path)}
    channel_first = False  # sizes are comparable once the image is channel-first
    for t in predictor.preprocessing.transforms:
        name = type(t).__name__
        before = tuple(d["image"].shape[1:]) if channel_first else None
        if before is not None and before != tuple(mask.shape[1:]):
            raise ValueError(f"mask {mask_path} is {tuple(mask.shape[1:])}, image {image_path} is {before}")
        if name == "CropForegroundd":
            start, end = t.cropper.compute_bounding_box(d[t.source_key])
            mask = torch.as_tensor(t.cropper.crop_pad(mask, start, end))
        elif name == "Resized":
            mask = torch.as_tensor(t.resizer(mask, mode="area"))
        elif name == "SpatialPadd":
            mask = torch.as_tensor(t.padder(mask))
        elif name == "KeepRoid" and getattr(t, "crop", False):
            region = t.detector(torch.as_tensor(d["image"]).float().mean(dim=0).cpu().numpy())
            if region.any():
                box = tuple(slice(max(0, int(i.min()) - t.margin), int(i.max()) + 1 + t.margin)
                            for i in np.nonzero(region))
                mask = mask[(slice(None), *box)]
        d = t(d)
        channel_first = channel_first or name == "EnsureChannelFirstd"
        after = tuple(d["image"].shape[1:]) if channel_first else None
        if before is not None and after != tuple(mask.shape[1:]):
            raise ValueError(f"preprocessing step {name} changes the image size in a way the mask cannot follow")
    image = torch.as_tensor(d["image"]).float()
    if tuple(mask.shape[1:]) != tuple(image.shape[1:]):
        raise ValueError(f"mask ends at {tuple(mask.shape[1:])}, image at {tuple(image.shape[1:])}")
    return image, mask[0].float().clamp(0, 1)


# ----------------------------------------------------------------------------- the four measures


def attribution_share(predictor, records: list[dict], roi: str | None = None) -> dict:
    """Mean share of GradCAM mass on the confounder: inside confounder_mask (records that show the
    confounder: confounder true or not given), else outside the roi detected on the prepared image."""
    if roi:
        return _attribution_outside_roi(predictor, records, roi)
    with_mask = [r for r in records if r.get("confounder_mask") and r.get("confounder") is not False]
    if not with_mask:
        return result(None, 0, "no test record showing the confounder has a confounder_mask (and no roi given)")
    pairs = [prepare_with_mask(predictor, r["image"], r["confounder_mask"]) for r in with_mask]
    images = torch.stack([p[0] for p in pairs])
    coverage = torch.stack([p[1] for p in pairs])
    return _share(saliency.gradcam_maps(predictor, images), coverage, "inside the confounder mask")


def _attribution_outside_roi(predictor, records: list[dict], roi: str) -> dict:
    from medbuilder.protocol.confounders import cached_roi_detector

    detector = cached_roi_detector(roi)
    images = prepare_all(predictor, [r["image"] for r in records])
    if len(images) == 0:
        return result(None, 0, "no test images")
    outside = torch.stack([torch.as_tensor(~detector(saliency.as_numpy_2d(x)), dtype=torch.float32)
                           for x in images])
    return _share(saliency.gradcam_maps(predictor, images), outside, f"outside the {roi} region")


def _share(maps: torch.Tensor, weight: torch.Tensor, where: str) -> dict:
    """Mean of sum(map * weight) / sum(map) over images whose map is not all zero."""
    total = maps.flatten(1).sum(1)
    used = total > 1e-12
    if not bool(used.any()):
        return result(None, 0, "GradCAM is zero on every image (no positive evidence at the last conv layer)")
    shares = (maps * weight).flatten(1).sum(1)[used] / total[used]
    area = weight.flatten(1).mean(1)[used]
    return result(float(shares.mean()), int(used.sum()), None, where=where, area_fraction=float(area.mean()),
                  skipped_flat_maps=int((~used).sum()))


def subgroup_gap(records: list[dict], positive: str | None) -> dict:
    """AUROC(confounder present) - AUROC(confounder absent), with each subgroup's n."""
    if positive is None:
        return result(None, 0, "AUROC needs a binary model")
    known = [r for r in records if r.get("confounder") is not None]
    present = [r for r in known if r["confounder"]]
    absent = [r for r in known if not r["confounder"]]
    if not present or not absent:
        return result(None, len(known), "the test records do not say which images show the confounder (or all/none do)")
    a1, a0 = (auroc(*[positive_of(g, positive)[i] for i in (0, 2)]) for g in (present, absent))
    extra = {"auroc_present": a1, "auroc_absent": a0, "n_present": len(present), "n_absent": len(absent)}
    if a1 is None or a0 is None:
        return result(None, len(known), "a subgroup holds one class only: its AUROC is undefined", **extra)
    return result(a1 - a0, len(known), None, **extra)


def confounded_fpr(records: list[dict], positive: str | None) -> dict:
    """False-positive rate on negatives with the confounder (the measure), beside the rate on clean negatives."""
    if positive is None:
        return result(None, 0, "false-positive rate needs a binary model")
    negatives = [r for r in records if r["label"] != positive and r.get("confounder") is not None]
    with_c = [r for r in negatives if r["confounder"]]
    without = [r for r in negatives if not r["confounder"]]

    def fpr(group):
        return sum(r["prediction"] == positive for r in group) / len(group) if group else None

    extra = {"fpr_clean": fpr(without), "n_confounded": len(with_c), "n_clean": len(without)}
    if not with_c:
        return result(None, len(negatives), "no test negative is marked as showing the confounder", **extra)
    value = fpr(with_c)
    return result(value, len(with_c), None,
                  difference=None if extra["fpr_clean"] is None else value - extra["fpr_clean"], **extra)


def counterfactual_flip_rate(predictor, records: list[dict], roi: str | None = None,
                             folder: Path | None = None) -> dict:
    """Share of predicted classes that change from each image to its counterfactual, and the mean
    |change| of the score (positive-class probability; multi-class: the original class's).

    Counterfactuals: the records' ``counterfactual`` twins; with ``roi``, the image blanked outside
    the detected region (prepared in memory; the first few also written as PNGs to ``folder``)."""
    if roi:
        if folder is None:
            raise ValueError("roi counterfactuals are written to a folder: pass folder")
        blanked, skipped = blank_outside_roi(predictor, records, roi, Path(folder))
        originals = [path for path, _ in blanked]
        p1 = saliency.class_probabilities(predictor, torch.stack([x for _, x in blanked])) if blanked else None
        how = f"blanked outside the {roi} region"
    else:
        pairs = [(r["image"], r["counterfactual"]) for r in records if r.get("counterfactual")]
        originals = [a for a, _ in pairs]
        p1 = saliency.class_probabilities(predictor, prepare_all(predictor, [b for _, b in pairs])) if pairs else None
        skipped, how = len(records) - len(pairs), "counterfactual twins from the index"
    if not originals:
        return result(None, 0, "no test record has a counterfactual (and no roi given)")
    p0 = saliency.class_probabilities(predictor, prepare_all(predictor, originals))
    classes = set(p0.argmax(1).tolist()) | set(p1.argmax(1).tolist())
    if len(classes) == 1:
        return result(None, len(originals), f"the model predicts one class ({predictor.names[classes.pop()]}) for "
                      "every image and counterfactual: a flip rate of 0 would say nothing about reliance", made_by=how)
    flips = (p0.argmax(1) != p1.argmax(1)).float()
    target = torch.full((len(originals),), predictor.positive) if predictor.positive is not None else p0.argmax(1)
    rows = torch.arange(len(originals))
    delta = (p0[rows, target] - p1[rows, target]).abs()
    return result(float(flips.mean()), len(originals), None, mean_abs_score_change=float(delta.mean()),
                  made_by=how, skipped=skipped)


# ----------------------------------------------------------------------------- calibration and subgroups


def calibration(records: list[dict], positive: str | None, bins: int = 10) -> dict:
    """Reliability bins and the expected calibration error (ECE, equal-width bins).

    Binary: the positive-class probability against the observed share of positives; multi-class:
    the top-class probability against accuracy. ECE = sum over bins of n_bin / n * |observed - mean p|."""
    if not records:
        return {"ece": None, "bins": [], "n": 0, "kind": None}
    if positive is not None:
        y, _, p = positive_of(records, positive)
        observed, kind = y.astype(float), "positive-class probability vs share of positives"
    else:
        p = np.array([max(r["probabilities"].values()) for r in records], dtype=float)
        observed = np.array([r["prediction"] == r["label"] for r in records], dtype=float)
        kind = "top-class probability vs accuracy"
    index = np.minimum((p * bins).astype(int), bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        inside = index == b
        n = int(inside.sum())
        row = {"lo": b / bins, "hi": (b + 1) / bins, "n": n, "mean_p": None, "observed": None}
        if n:
            row["mean_p"], row["observed"] = float(p[inside].mean()), float(observed[inside].mean())
            ece += n / len(p) * abs(row["observed"] - row["mean_p"])
        rows.append(row)
    return {"ece": float(ece), "bins": rows, "n": len(p), "kind": kind}


def subgroup_metrics(records: list[dict], positive: str | None) -> dict:
    """{group: {"n", "accuracy", "auroc"}} over the records' ``group`` values (AUROC None with one class)."""
    groups = sorted({str(r["group"]) for r in records if r.get("group")})
    out = {}
    for g in groups:
        members = [r for r in records if str(r.get("group")) == g]
        accuracy = float(np.mean([r["prediction"] == r["label"] for r in members]))
        value = auroc(*[positive_of(members, positive)[i] for i in (0, 2)]) if positive is not None else None
        out[g] = {"n": len(members), "accuracy": accuracy, "auroc": value}
    return out


def all_measures(predictor, records: list[dict], positive: str | None, roi: str | None, folder: Path) -> dict:
    return {"attribution_share": attribution_share(predictor, records, roi),
            "subgroup_gap": subgroup_gap(records, positive),
            "counterfactual_flip_rate": counterfactual_flip_rate(predictor, records, roi, folder / "counterfactuals"),
            "confounded_fpr": confounded_fpr(records, positive)}
