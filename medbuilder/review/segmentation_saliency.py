"""Saliency for segmentation models: which parts of the image the predicted structure depends on.

Occlusion: the image is cut into a coarse grid of blocks; each block in turn is
replaced by the image mean, and the saliency of the block is how much the mean
foreground probability inside the (unoccluded) predicted mask falls. Blocks far
from the structure that still matter point at a shortcut (a marker, a border).
Works for 2D and 3D; 3D figures show the slice with the largest predicted area.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from medbuilder.review import inference_clock
from medbuilder.review.interpret import _save, artifact_key, plt, publish_artifacts
from medbuilder.review.trusted_code import TRUSTED_CODE, trusted_predict

GRID = {2: 8, 3: 4}  # blocks per axis: 64 forward passes for 2D, 64 for 3D


def load_segmenter(workspace: Path, source: Path):
    """(predictor, logits function) built by medbuilder's own template code, once the workspace's is checked."""
    namespace = trusted_predict("segmentation", Path(workspace), Path(workspace).parent / TRUSTED_CODE / "segmentation")
    predictor = namespace["load"](source, device="cpu")
    inference_clock.attach(predictor.network)

    def logits(x: torch.Tensor) -> torch.Tensor:
        roi = namespace["inference_roi"](predictor.cfg, x.shape[2:])
        return namespace["sliding_window_inference"](x, roi, predictor=predictor.network, **predictor.sw)

    return predictor, logits


def foreground_score(logits: torch.Tensor, region: torch.Tensor) -> float:
    """Mean foreground probability (1 - background) inside `region`."""
    foreground = 1.0 - torch.softmax(logits, dim=1)[0, 0]
    return float(foreground[region].mean())


@torch.no_grad()
def occlusion_map(logits, image: torch.Tensor, grid: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(saliency in [0, 1] of the image's spatial shape, predicted foreground mask); None when nothing is found."""
    x = image.unsqueeze(0).float()
    base = logits(x)
    region = base.argmax(dim=1)[0] != 0
    if not bool(region.any()):
        return None
    reference, fill = foreground_score(base, region), float(x.mean())
    spatial = x.shape[2:]
    steps = [math.ceil(s / grid) for s in spatial]
    saliency = torch.zeros(spatial)
    for corner in itertools.product(*[range(0, s, step) for s, step in zip(spatial, steps)]):
        block = tuple(slice(c, c + step) for c, step in zip(corner, steps))
        occluded = x.clone()
        occluded[(slice(None), slice(None), *block)] = fill
        saliency[block] = max(0.0, reference - foreground_score(logits(occluded), region))
    top = float(saliency.max())
    return (saliency / top if top > 0 else saliency), region


def _slice(volume: np.ndarray, k: int | None) -> np.ndarray:
    return volume if k is None else volume[..., k]


def figure(cases: list[dict], path: Path) -> Path:
    """One row per case: the image, the predicted mask, occlusion saliency (middle of the structure in 3D)."""
    fig, axes = plt.subplots(len(cases), 3, figsize=(6.0, 2.0 * len(cases)), squeeze=False)
    for row, case in enumerate(cases):
        k = int(case["mask"].sum(axis=(0, 1)).argmax()) if case["mask"].ndim == 3 else None
        grey = _slice(case["image"], k)
        for col, (overlay, name) in enumerate(((None, "image"), (case["mask"], "predicted mask"),
                                               (case["saliency"], "occlusion"))):
            ax = axes[row, col]
            ax.imshow(grey.T, cmap="gray")
            if overlay is not None:
                ax.imshow(_slice(overlay, k).T.astype(float), cmap="jet", alpha=0.45, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize=8)
            if col == 0:
                ax.set_ylabel(Path(case["file"]).name[:24] + (f"\nslice {k}" if k is not None else ""), fontsize=7)
    return _save(fig, path)


def outside_share(saliency: torch.Tensor, region: torch.Tensor, margin: int = 2) -> float:
    """Share of the saliency mass farther than `margin` voxels from the predicted structure."""
    from scipy import ndimage

    near = ndimage.binary_dilation(region.numpy(), iterations=margin)
    total = float(saliency.sum())
    return float(saliency.numpy()[~near].sum() / total) if total > 0 else 0.0


def interpret_segmentation(workspace: Path, index_dir: Path, out_dir: Path, snapshot: Path | None = None,
                           max_images: int = 3) -> dict:
    """Occlusion saliency of a segmentation round on a few test images: a figure, markdown and numbers."""
    started = time.time()
    out_dir = Path(out_dir)
    predictor, logits = load_segmenter(Path(workspace), Path(snapshot or workspace))
    records = json.loads((Path(index_dir) / "test.json").read_text())[:max_images]
    grid = GRID[predictor.dims]
    cases = []
    for record in records:
        image = predictor.prepare(record["image"])["image"]
        found = occlusion_map(logits, image, grid)
        if found is None:
            cases.append({"file": record["image"], "found": False})
            continue
        saliency, region = found
        cases.append({"file": record["image"], "found": True, "outside_share": outside_share(saliency, region),
                      "image": image.float().mean(dim=0).numpy(), "mask": region.numpy(),
                      "saliency": saliency.numpy()})
    shown = [c for c in cases if c["found"]]
    fig = figure(shown, out_dir / "saliency-segmentation.png") if shown else None
    rows = [{"file": Path(c["file"]).name, "structure found": c["found"],
             "saliency outside the structure": round(c["outside_share"], 3) if c["found"] else None} for c in cases]
    report = {"task": "segmentation", "method": f"occlusion, {grid} blocks per axis, filled with the image mean",
              "cases": rows, "figure": fig.name if fig else None, "seconds": round(time.time() - started, 2)}
    markdown = render(report)
    (out_dir / "interpretability.md").write_text(markdown)
    (out_dir / "interpretability.json").write_text(json.dumps(report, indent=2))
    report["published"] = publish_artifacts(markdown, rows, artifact_key(out_dir))
    return report


def render(report: dict) -> str:
    lines = ["# Interpretability (segmentation)", "",
             f"Occlusion saliency ({report['method']}): how much the mean foreground probability inside the "
             "predicted structure falls when each block is hidden. Saliency far outside the structure "
             "(more than 2 voxels away) would mean the model uses something else in the image.", "",
             "| test image | structure found | saliency outside the structure |", "| --- | --- | --- |"]
    lines += [f"| {r['file']} | {r['structure found']} | {r['saliency outside the structure']} |"
              for r in report["cases"]]
    if report["figure"]:
        lines += ["", f"![occlusion]({report['figure']})"]
    lines += ["", f"_Computed in {report['seconds']:.1f} s._", ""]
    return "\n".join(lines)
