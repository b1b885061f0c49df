"""Medical tool normalize_image: modality presets for intensity windowing and scaling.

Python callers use `normalize_array(array, preset)`; the tool reads a file, writes
the normalized array into the workspace and reports what changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from medbuilder.protocol.tools.context import ToolError, Workspace
from medbuilder.protocol.tools.medload import default_output, load_medical, save_array


@dataclass(frozen=True)
class Preset:
    name: str
    modality: str
    method: str  # "window", "percentile", "minmax" or "zscore"
    params: tuple[float, ...]
    description: str


PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("ct_soft_tissue", "CT", "window", (400, 40), "CT window W400/L40 (HU -160..240) to [0,1]: abdomen, neck, soft tissue"),
    Preset("ct_lung", "CT", "window", (1500, -600), "CT window W1500/L-600 (HU -1350..150) to [0,1]: lung parenchyma"),
    Preset("ct_bone", "CT", "window", (1800, 400), "CT window W1800/L400 (HU -500..1300) to [0,1]: bone"),
    Preset("ct_brain", "CT", "window", (80, 40), "CT window W80/L40 (HU 0..80) to [0,1]: brain"),
    Preset("ct_liver", "CT", "window", (150, 30), "CT window W150/L30 (HU -45..105) to [0,1]: liver lesions"),
    Preset("mri_percentile", "MRI", "percentile", (1, 99), "MRI: clip to the 1st-99th percentile, scale to [0,1]"),
    Preset("mri_zscore", "MRI", "zscore", (), "MRI: zero mean, unit variance over non-zero voxels (nnU-Net style)"),
    Preset("xray_minmax", "X-ray", "minmax", (), "X-ray: min-max to [0,1]"),
    Preset("xray_percentile", "X-ray", "percentile", (0.5, 99.5), "X-ray: clip to the 0.5-99.5th percentile, scale to [0,1]"),
    Preset("minmax", "any", "minmax", (), "any modality (fundus, microscopy, 8-bit photos): min-max to [0,1]"),
]}


def preset_list() -> str:
    return "\n".join(f"  {p.name}: {p.description}" for p in PRESETS.values())


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name.strip().lower()]
    except KeyError:
        raise ToolError(f"unknown preset '{name}'. Valid presets:\n{preset_list()}") from None


def normalize_array(array: np.ndarray, preset: str, *, invert: bool = False) -> np.ndarray:
    """`array` normalized by the named preset, as float32; `invert` flips [0,1] (for MONOCHROME1 X-rays)."""
    chosen = get_preset(preset)
    values = np.asarray(array, dtype=np.float32)
    if chosen.method == "window":
        width, level = chosen.params
        out = _scale(values, level - width / 2, level + width / 2)
    elif chosen.method == "percentile":
        low, high = np.percentile(values, chosen.params)
        out = _scale(values, float(low), float(high))
    elif chosen.method == "minmax":
        out = _scale(values, float(values.min()), float(values.max()))
    else:
        out = _zscore(values)
    if invert:
        if chosen.method == "zscore":
            raise ToolError("invert applies to presets scaling to [0,1]; use an xray_ preset with invert")
        out = 1.0 - out
    return out.astype(np.float32, copy=False)


def _scale(values: np.ndarray, low: float, high: float) -> np.ndarray:
    if high <= low:
        return np.zeros_like(values)
    return (np.clip(values, low, high) - low) / (high - low)


def _zscore(values: np.ndarray) -> np.ndarray:
    foreground = values[values != 0] if np.any(values != 0) else values
    std = float(foreground.std())
    return (values - float(foreground.mean())) / (std if std > 0 else 1.0)


@dataclass
class NormalizeResult:
    source: str
    output: str
    preset: str
    before: dict
    after: dict
    clipped: tuple[float, float] = (0.0, 0.0)
    warnings: list[str] = field(default_factory=list)

    def as_text(self) -> str:
        fmt = "min {min:.4g}, max {max:.4g}, mean {mean:.4g}, std {std:.4g}"
        lines = [
            f"Normalized {self.source} with {self.preset}: {PRESETS[self.preset].description}",
            f"saved to {self.output}",
            "before: " + fmt.format(**self.before),
            "after:  " + fmt.format(**self.after),
            f"clipped: {self.clipped[0]:.1%} of values at the low end, {self.clipped[1]:.1%} at the high end",
        ]
        return "\n".join(lines + [f"warning: {w}" for w in self.warnings])


def normalize_image(ctx: Workspace, path: str, preset: str, output_path: str = "", invert: bool = False) -> NormalizeResult:
    """Normalize the intensities of a medical image with a modality preset and save the result in the workspace.

    Presets: ct_soft_tissue (W400/L40), ct_lung (W1500/L-600), ct_bone (W1800/L400),
    ct_brain (W80/L40), ct_liver (W150/L30): clip Hounsfield units to the window and
    scale to [0,1]; mri_percentile (1-99th percentile to [0,1]); mri_zscore (zero mean,
    unit variance over non-zero voxels); xray_minmax; xray_percentile (0.5-99.5th);
    minmax (any modality). The result is saved as .npy, or .nii.gz keeping the
    affine of a NIfTI or DICOM volume. It reports statistics before and after and
    the share of clipped values, and warns if a CT window meets values that do not
    look like Hounsfield units.

    Args:
        path: Image file or DICOM series folder to normalize.
        preset: One of the preset names above.
        output_path: Where to save in the workspace (.npy or .nii.gz); default normalized/<name>_<preset>.npy or .nii.gz.
        invert: Flip the result (1 - x), e.g. for MONOCHROME1 X-rays where bone is dark.
    """
    chosen = get_preset(preset)
    image = load_medical(ctx.existing(path))
    values = image.array.astype(np.float32)
    out = normalize_array(values, chosen.name, invert=invert)
    target = save_array(ctx, out, output_path or default_output(image, "normalized", chosen.name), image.affine)
    result = NormalizeResult(image.path, ctx.show(target), chosen.name, image.stats(), _stats(out))
    if chosen.method in {"window", "percentile"}:
        low, high = _bounds(values, chosen)
        result.clipped = (float(np.mean(values < low)), float(np.mean(values > high)))
    if chosen.modality == "CT" and values.min() >= 0 and values.max() <= 255:
        result.warnings.append(
            f"values run {values.min():g}..{values.max():g}: not Hounsfield units (already scaled, or not CT?); "
            "a CT window expects HU such as -1000 for air. Consider xray_minmax or minmax."
        )
    if image.meta.get("photometric") == "MONOCHROME1" and not invert:
        result.warnings.append("the image is MONOCHROME1 (inverted grey scale); pass invert=true to make bone bright")
    return result


def _bounds(values: np.ndarray, preset: Preset) -> tuple[float, float]:
    if preset.method == "window":
        width, level = preset.params
        return level - width / 2, level + width / 2
    low, high = np.percentile(values, preset.params)
    return float(low), float(high)


def _stats(values: np.ndarray) -> dict:
    return {"min": float(values.min()), "max": float(values.max()), "mean": float(values.mean()), "std": float(values.std())}
