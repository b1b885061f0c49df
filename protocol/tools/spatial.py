"""Medical tool check_3D: does a mask lie on its image's grid, and is it a usable label map?"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import permutations

import numpy as np

from medbuilder.protocol.tools.context import Workspace
from medbuilder.protocol.tools.medload import MedImage, load_medical

SPACING_RTOL = 1e-3
ORIGIN_TOL_MM = 0.5
ANGLE_TOL_DEG = 1.0


@dataclass
class SpatialCheck:
    image: str
    mask: str
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)
    labels: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_text(self) -> str:
        verdict = "AGREE" if self.ok else f"DISAGREE ({len(self.problems)} problem(s))"
        lines = [f"image {self.image} vs mask {self.mask}: {verdict}"]
        lines += [f"PROBLEM: {p}" for p in self.problems]
        lines += [f"warning: {w}" for w in self.warnings]
        lines += [f"ok: {f}" for f in self.facts]
        return "\n".join(lines)


def compare_image_mask(image: MedImage, mask: MedImage) -> SpatialCheck:
    """Shape, spacing, orientation, origin and mask values of an image/mask pair."""
    check = SpatialCheck(image.path, mask.path)
    _check_shape(check, image.array.shape, mask.array.shape)
    _check_spacing(check, image, mask)
    _check_orientation(check, image, mask)
    _check_affine(check, image, mask)
    _check_mask_values(check, mask.array)
    return check


def check_3D(ctx: Workspace, image_path: str, mask_path: str) -> SpatialCheck:  # noqa: N802 (the paper's name)
    """Check that a segmentation mask matches its image in space, and that its values make a label map.

    Compares shape (also spotting the same sizes in another axis order), voxel
    spacing, orientation codes (e.g. RAS vs LPS), origin and direction (for
    NIfTI and DICOM), and inspects the mask values: binary or which labels,
    non-integer values (an interpolated mask), negative values, empty or constant
    masks. Says exactly what disagrees and by how much. Works for 3D volumes and
    2D images; give both paths.

    Args:
        image_path: The image file (or DICOM series folder).
        mask_path: The mask / label file meant to lie on the same grid.
    """
    return compare_image_mask(load_medical(ctx.existing(image_path)), load_medical(ctx.existing(mask_path)))


def _check_shape(check: SpatialCheck, image_shape: tuple, mask_shape: tuple) -> None:
    while len(mask_shape) > len(image_shape) and mask_shape[-1] == 1:
        mask_shape = mask_shape[:-1]
    if image_shape == mask_shape:
        check.facts.append(f"shape {image_shape} on both")
    elif len(image_shape) == len(mask_shape) + 1 and image_shape[:-1] == mask_shape:
        check.facts.append(f"spatial shape {mask_shape} on both (the image has {image_shape[-1]} channels last)")
    elif len(image_shape) == len(mask_shape) and sorted(image_shape) == sorted(mask_shape):
        order = next(p for p in permutations(range(len(mask_shape))) if tuple(mask_shape[i] for i in p) == image_shape)
        check.problems.append(
            f"shape differs: image {image_shape}, mask {mask_shape}: the same sizes in another axis order; "
            f"np.transpose(mask, {order}) would match the shape (then check orientation)"
        )
    else:
        check.problems.append(f"shape differs: image {image_shape}, mask {mask_shape}; resample the mask onto the image grid")


def _check_spacing(check: SpatialCheck, image: MedImage, mask: MedImage) -> None:
    unknown = [m.path for m in (image, mask) if not m.spacing_known]
    if unknown:
        check.warnings.append(f"spacing unknown for {', '.join(unknown)} (format carries none); not compared")
        return
    n = min(len(image.spacing), len(mask.spacing))
    differing = [
        f"axis {axis}: image {image.spacing[axis]:g} mm, mask {mask.spacing[axis]:g} mm"
        for axis in range(n)
        if not np.isclose(image.spacing[axis], mask.spacing[axis], rtol=SPACING_RTOL, atol=1e-5)
    ]
    if differing:
        check.problems.append("spacing differs: " + "; ".join(differing))
    else:
        check.facts.append("spacing (" + ", ".join(f"{s:g}" for s in image.spacing[:n]) + ") mm on both")


def _check_orientation(check: SpatialCheck, image: MedImage, mask: MedImage) -> None:
    if image.orientation is None or mask.orientation is None:
        check.warnings.append("orientation unknown for at least one file; not compared")
    elif tuple(image.orientation) != tuple(mask.orientation):
        check.problems.append(
            f"orientation differs: image {''.join(image.orientation)}, mask {''.join(mask.orientation)}; "
            "reorient one (e.g. nibabel.as_closest_canonical or MONAI Orientation) before pairing voxels"
        )
    else:
        check.facts.append(f"orientation {''.join(image.orientation)} on both")


def _check_affine(check: SpatialCheck, image: MedImage, mask: MedImage) -> None:
    if image.affine is None or mask.affine is None:
        return
    shift = np.asarray(image.affine)[:3, 3] - np.asarray(mask.affine)[:3, 3]
    if np.linalg.norm(shift) > ORIGIN_TOL_MM:
        check.problems.append(
            f"origin differs by {np.linalg.norm(shift):.2f} mm: image {np.round(image.affine[:3, 3], 2).tolist()}, "
            f"mask {np.round(mask.affine[:3, 3], 2).tolist()}"
        )
    if tuple(image.orientation or ()) == tuple(mask.orientation or ()):
        a = _unit_columns(np.asarray(image.affine)[:3, :3])
        b = _unit_columns(np.asarray(mask.affine)[:3, :3])
        angles = np.degrees(np.arccos(np.clip(np.sum(a * b, axis=0), -1, 1)))
        if angles.max() > ANGLE_TOL_DEG:
            check.problems.append(f"axis directions differ by up to {angles.max():.1f} degrees (oblique vs straight?)")


def _unit_columns(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.maximum(np.linalg.norm(matrix, axis=0, keepdims=True), 1e-12)


def _check_mask_values(check: SpatialCheck, values: np.ndarray) -> None:
    labels = np.unique(values)
    check.labels = labels[:50].tolist()
    if labels.size > 50 or not np.all(np.equal(np.mod(labels, 1), 0)):
        example = next((v for v in labels if v % 1), labels[len(labels) // 2])
        check.problems.append(
            f"mask has {labels.size} distinct values, including non-integers (e.g. {example:g}): a probability map or "
            "an interpolated mask? threshold it, or resample masks with nearest-neighbour interpolation"
        )
        return
    if labels.min() < 0:
        check.problems.append(f"mask has negative labels {labels[labels < 0].tolist()}; labels should be 0 (background) and up")
    if labels.size == 1:
        what = "empty (all zeros)" if labels[0] == 0 else f"constant (every voxel is {labels[0]:g})"
        check.warnings.append(f"mask is {what}")
    elif labels.size == 2 and labels[0] == 0:
        note = "; convert 255 to 1 for training" if labels[1] == 255 else ""
        check.facts.append(f"binary mask (0 and {labels[1]:g}), foreground {np.mean(values != 0):.2%} of voxels{note}")
    else:
        check.facts.append(f"label map with {labels.size} values {check.labels}")
