"""Medical tool augment_image: modality-aware MONAI augmentation pipelines.

A pipeline is data (transform name, arguments, reason), turned into a MONAI
`Compose` of array transforms working on channel-first arrays: (C, H, W) for 2D,
(C, X, Y, Z) for 3D. Flips are across the left-right axis only (axis 1 of a 2D
(rows, cols) image, axis 0 of an (x, y, z) volume): other mirrorings make
anatomy that does not exist. Chest X-rays are not flipped unless asked, because
the heart's side is part of the anatomy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from medbuilder.protocol.tools.context import ToolError, Workspace
from medbuilder.protocol.tools.medload import default_output, load_medical, save_array

if TYPE_CHECKING:
    from monai.transforms import Compose

ALIASES = {"mri": "mri", "mr": "mri", "ct": "ct", "xray": "xray", "x-ray": "xray", "cxr": "xray",
           "radiograph": "xray", "cr": "xray", "dx": "xray", "fundus": "fundus", "retina": "fundus"}
TWO_D_ONLY = {"xray", "fundus"}


@dataclass(frozen=True)
class Step:
    transform: str
    args: dict
    why: str

    def as_text(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.args.items())
        return f"{self.transform}({args}): {self.why}"


@dataclass
class AugmentPlan:
    modality: str
    dimension: int
    steps: list[Step]
    compose: Compose
    output: str = ""

    def as_text(self) -> str:
        lines = [f"Augmentation for {self.modality} {self.dimension}D (MONAI, channel-first arrays, apply to training data only):"]
        lines += [f"  {i + 1}. {s.as_text()}" for i, s in enumerate(self.steps)]
        lines.append(
            "For image+mask pairs use the dictionary versions (e.g. RandFlipd) on both keys, with mode='nearest' for masks."
        )
        if self.output:
            lines.append(f"Applied once to the file; result saved to {self.output}")
        return "\n".join(lines)


def _rotation(dimension: int, radians: float, prob: float) -> Step:
    ranges = {"range_x": radians} if dimension == 2 else {"range_x": radians, "range_y": radians, "range_z": radians}
    why = f"small rotations up to {np.degrees(radians):.0f} degrees: patient positioning varies"
    return Step("RandRotate", {**ranges, "prob": prob, "keep_size": True}, why)


def _lr_flip(dimension: int, why: str) -> Step:
    return Step("RandFlip", {"spatial_axis": 1 if dimension == 2 else 0, "prob": 0.5}, why)


def augmentation_steps(modality: str, dimension: int, allow_lr_flip: bool = False) -> list[Step]:
    """The pipeline for a modality ('mri', 'ct', 'xray', 'fundus') and dimension (2 or 3)."""
    zoom = Step("RandZoom", {"min_zoom": 0.9, "max_zoom": 1.1, "prob": 0.3}, "scale changes of +-10%: field of view varies")
    noise = Step("RandGaussianNoise", {"std": 0.01, "prob": 0.2}, "slight noise, in [0,1] units: apply after normalize_image")
    if modality == "mri":
        return [
            _lr_flip(dimension, "left-right mirror: the brain and body are nearly symmetric across that plane"),
            _rotation(dimension, 0.26, 0.3),
            Step("RandScaleIntensity", {"factors": 0.1, "prob": 0.5}, "MRI intensities have no absolute unit: scale +-10%"),
            Step("RandShiftIntensity", {"offsets": 0.1, "prob": 0.5}, "and shift them by +-0.1"),
            Step("RandBiasField", {"degree": 3, "coeff_range": (0.0, 0.1), "prob": 0.3}, "smooth coil inhomogeneity (bias field)"),
            Step("RandAdjustContrast", {"gamma": (0.7, 1.5), "prob": 0.3}, "gamma changes between scanners and sequences"),
            noise,
        ]
    if modality == "ct":
        return [
            _lr_flip(dimension, "left-right mirror of near-symmetric anatomy"),
            _rotation(dimension, 0.26, 0.3),
            zoom,
            Step(noise.transform, noise.args, noise.why + "; no intensity shift or scaling, so HU windows keep their meaning"),
        ]
    if modality == "xray":
        steps = [
            _rotation(dimension, 0.17, 0.3),
            zoom,
            Step("RandAdjustContrast", {"gamma": (0.8, 1.25), "prob": 0.3}, "exposure and contrast differ between machines"),
            Step(noise.transform, {"std": 0.01, "prob": 0.1}, noise.why),
        ]
        if allow_lr_flip:
            why = "left-right mirror, ASKED FOR: it moves the heart to the right side (dextrocardia-like)"
            steps.insert(0, _lr_flip(dimension, why))
        return steps
    if modality == "fundus":
        return [
            _lr_flip(dimension, "left-right mirror: a right eye becomes left-eye-like, harmless for grading"),
            Step("RandFlip", {"spatial_axis": 0, "prob": 0.5}, "up-down mirror: the fundus disc has no fixed up"),
            _rotation(dimension, 0.52, 0.5),
            Step("RandScaleIntensity", {"factors": 0.1, "prob": 0.5}, "brightness differs between cameras"),
            Step("RandAdjustContrast", {"gamma": (0.8, 1.25), "prob": 0.3}, "contrast differs between cameras"),
        ]
    raise ToolError(f"unknown modality '{modality}'; use one of: mri, ct, xray, fundus")


def build_augmentation(modality: str, dimension: int | str = 2, *, allow_lr_flip: bool = False, seed: int = 0) -> AugmentPlan:
    """An `AugmentPlan`: the steps as text and the MONAI Compose for Python."""
    key = ALIASES.get(modality.strip().lower())
    if key is None:
        raise ToolError(f"unknown modality '{modality}'; use one of: mri, ct, xray (x-ray, cxr), fundus")
    dim = int(str(dimension).strip().upper().removesuffix("D"))
    if dim not in (2, 3):
        raise ToolError(f"dimension must be 2D or 3D, got '{dimension}'")
    if dim == 3 and key in TWO_D_ONLY:
        raise ToolError(f"{key} images are 2D; use dimension='2D'")
    steps = augmentation_steps(key, dim, allow_lr_flip)
    import monai.transforms as mt  # imported here: MONAI (and torch) take seconds to import

    compose = mt.Compose([getattr(mt, s.transform)(**s.args) for s in steps])
    compose.set_random_state(seed=seed)
    return AugmentPlan(key, dim, steps, compose)


def augment_image(
    ctx: Workspace, modality: str, dimension: str = "2D", path: str = "", output_path: str = "",
    seed: int = 0, allow_lr_flip: bool = False,
) -> AugmentPlan:
    """Describe a modality-appropriate MONAI augmentation pipeline, and optionally apply it to one image.

    Modalities: mri (flips, small rotations, intensity scale/shift, bias field,
    gamma, noise), ct (flips, rotations, zoom, slight noise; no intensity shift, to
    keep Hounsfield windows meaningful), xray (small rotation and zoom, contrast; no
    left-right flip unless allow_lr_flip, since the heart's side matters), fundus
    (flips, rotations, brightness, contrast). It returns each transform with its
    parameters and reason, to copy into training code. With path, the pipeline is
    applied once to that image (same seed gives the same result) and saved to the
    workspace as .npy or .nii.gz, to look at what it does.

    Args:
        modality: mri, ct, xray or fundus.
        dimension: 2D or 3D.
        path: Optional image to augment once (file or DICOM series folder).
        output_path: Where to save it in the workspace (.npy or .nii.gz); default augmented/<name>_aug.npy.
        seed: Random seed for the transforms.
        allow_lr_flip: For X-ray: also flip left-right (only if laterality does not matter).
    """
    plan = build_augmentation(modality, dimension, allow_lr_flip=allow_lr_flip, seed=seed)
    if path:
        image = load_medical(ctx.existing(path))
        channel_first, channels_last = _channel_first(image.array, plan.dimension, image.path)
        result = np.asarray(plan.compose(channel_first.astype(np.float32)))
        result = result[0] if result.shape[0] == 1 and not channels_last else np.moveaxis(result, 0, -1)
        target = save_array(ctx, result, output_path or default_output(image, "augmented", "aug"), image.affine)
        plan.output = ctx.show(target)
    return plan


def _channel_first(array: np.ndarray, dimension: int, path: str) -> tuple[np.ndarray, bool]:
    """(C, spatial...) array, and whether the input had channels last."""
    if array.ndim == dimension:
        return array[None], False
    if array.ndim == dimension + 1 and array.shape[-1] <= 4:
        return np.moveaxis(array, -1, 0), True
    raise ToolError(
        f"{path} has shape {array.shape}, which is not a {dimension}D image (with up to 4 channels last); check dimension"
    )
