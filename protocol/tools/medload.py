"""Medical tool load_med_data: read common medical formats into a numpy array with spacing and orientation.

Layouts: 2D images (PNG, JPEG, BMP, single-frame DICOM) are (rows, cols[, channels]);
volumes (NIfTI, DICOM series) are (x, y, z) like nibabel and MONAI; TIFF stacks
and .npy arrays are as stored. Orientation codes name where each array axis points
in RAS+ terms (nibabel's convention: ('R','A','S') means axis 0 runs to the right).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from PIL import Image, UnidentifiedImageError

from medbuilder.protocol.tools.context import ToolError, Workspace, suffix_of
from medbuilder.protocol.tools.dicom import LPS_TO_RAS, read_dicom_file, read_dicom_series

PIL_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}
TIFF_SUFFIXES = {".tif", ".tiff"}
NIFTI_SUFFIXES = {".nii", ".nii.gz"}
SUPPORTED = "png, jpg/jpeg, bmp, tif/tiff, npy, nii/nii.gz, dcm (file) and DICOM series (folder)"


@dataclass
class MedImage:
    """An image or volume as an array, with where its voxels lie."""

    array: np.ndarray
    path: str
    format: str
    spacing: tuple[float, ...]
    orientation: tuple[str, ...] | None = None
    affine: np.ndarray | None = None
    spacing_known: bool = False
    meta: dict = field(default_factory=dict)

    def stats(self) -> dict:
        values = self.array.astype(np.float64, copy=False)
        return {"min": float(values.min()), "max": float(values.max()),
                "mean": float(values.mean()), "std": float(values.std())}

    def as_text(self) -> str:
        stats = self.stats()
        spacing = ", ".join(f"{s:g}" for s in self.spacing)
        lines = [
            f"{self.path} ({self.format})",
            f"shape {tuple(self.array.shape)}, dtype {self.array.dtype}",
            f"spacing ({spacing})" + (" mm" if self.spacing_known else " (unknown, assumed 1)"),
            f"orientation {''.join(self.orientation)}" if self.orientation else "orientation unknown",
            "intensity min {min:.4g}, max {max:.4g}, mean {mean:.4g}, std {std:.4g}".format(**stats),
        ]
        uniques = np.unique(self.array) if self.array.size <= 50_000_000 else np.array([])
        if 0 < uniques.size <= 10:
            lines.append(f"only {uniques.size} distinct values {uniques.tolist()}: looks like a mask or label map")
        for key in ("modality", "photometric", "slices", "warning", "channels"):
            if self.meta.get(key):
                lines.append(f"{key}: {self.meta[key]}")
        if self.meta.get("tags"):
            lines.append("DICOM tags: " + "; ".join(f"{k}={v}" for k, v in self.meta["tags"].items()))
        if self.meta.get("photometric") == "MONOCHROME1":
            lines.append("MONOCHROME1: low values are displayed white; use normalize_image with invert=true")
        return "\n".join(lines)


def load_medical(path: Path | str, *, series_uid: str | None = None) -> MedImage:
    """Read `path` (a file, or a folder holding one DICOM series) into a `MedImage`."""
    path = Path(path)
    if not path.exists():
        raise ToolError(f"{path} does not exist")
    if path.is_dir():
        return _from_dicom_series(path, series_uid)
    suffix = suffix_of(path)
    if suffix in NIFTI_SUFFIXES:
        return _from_nifti(path)
    if suffix in PIL_SUFFIXES:
        return _from_pil(path)
    if suffix in TIFF_SUFFIXES:
        return _from_tiff(path)
    if suffix == ".npy":
        return _from_npy(path)
    if suffix in {".dcm", ".dicom", ".ima", ""}:
        return _from_dicom_file(path)
    raise ToolError(f"{path}: format '{suffix}' is not supported; supported: {SUPPORTED}")


def load_med_data(ctx: Workspace, path: str, series_uid: str | None = None) -> MedImage:
    """Load a medical image or volume and describe it: shape, dtype, spacing, orientation, intensities.

    Reads PNG, JPEG, BMP, TIFF, NumPy .npy, NIfTI (.nii, .nii.gz), a DICOM file, or
    a folder holding one DICOM series (slices sorted by position). CT DICOM values
    are converted to Hounsfield units. Volumes are indexed (x, y, z); 2D images
    (rows, cols[, channels]). Orientation codes such as RAS say where each array axis
    points (R = towards the patient's right). A file that is corrupted or truncated
    gives an error naming it. Use this to check a few samples before writing a
    dataloader.

    Args:
        path: Image file or DICOM series folder, absolute or relative to the workspace.
        series_uid: For a folder holding several DICOM series, the SeriesInstanceUID to load.
    """
    return load_medical(ctx.existing(path), series_uid=series_uid)


def _from_nifti(path: Path) -> MedImage:
    try:
        image = nib.load(str(path))
        array = np.asanyarray(image.dataobj)
    except (OSError, EOFError, ValueError, zlib.error, ImageFileError) as err:
        raise ToolError(f"{path} could not be read as NIfTI (corrupted or truncated?): {err}") from None
    zooms = tuple(float(z) for z in image.header.get_zooms()[: min(array.ndim, 3)])
    codes = tuple(nib.aff2axcodes(image.affine))
    return MedImage(array, str(path), "NIfTI", zooms, codes, image.affine, True)


def _from_pil(path: Path) -> MedImage:
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            if mode in {"P", "PA"}:
                image = image.convert("RGBA" if "transparency" in image.info or mode == "PA" else "RGB")
            array = np.asarray(image)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
        raise ToolError(f"{path} could not be read as an image (corrupted or truncated?): {err}") from None
    meta = {"channels": f"{array.shape[2]} ({mode})"} if array.ndim == 3 else {}
    return MedImage(array, str(path), f"{path.suffix.lstrip('.').upper()} image", (1.0, 1.0), meta=meta)


def _from_tiff(path: Path) -> MedImage:
    import tifffile

    try:
        array = tifffile.imread(path)
    except (OSError, ValueError, EOFError, tifffile.TiffFileError) as err:
        raise ToolError(f"{path} could not be read as TIFF (corrupted or truncated?): {err}") from None
    return MedImage(array, str(path), "TIFF", (1.0,) * min(array.ndim, 3))


def _from_npy(path: Path) -> MedImage:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise ToolError(f"{path} could not be read as a .npy array (corrupted, truncated or pickled?): {err}") from None
    return MedImage(array, str(path), "NumPy array", (1.0,) * min(array.ndim, 3))


def _from_dicom_file(path: Path) -> MedImage:
    array, meta = read_dicom_file(path)
    directions = meta.pop("directions", None)
    codes = tuple(axis_code(d) for d in directions) if directions else None
    spacing, known = meta.pop("spacing"), meta.pop("spacing_known")
    return MedImage(array, str(path), "DICOM", spacing, codes, None, known, meta)


def _from_dicom_series(folder: Path, series_uid: str | None) -> MedImage:
    volume, meta = read_dicom_series(folder, series_uid)
    affine = meta.pop("affine")
    spacing = meta.pop("spacing")
    meta.pop("spacing_known")
    return MedImage(volume, str(folder), "DICOM series", spacing, tuple(nib.aff2axcodes(affine)), affine, True, meta)


def axis_code(direction_lps: np.ndarray) -> str:
    """The RAS+ axis code of a DICOM (LPS+) direction: where increasing index points."""
    ras = LPS_TO_RAS @ np.asarray(direction_lps, float)
    axis = int(np.argmax(np.abs(ras)))
    return "RAS"[axis] if ras[axis] > 0 else "LPI"[axis]


ARRAY_OUTPUTS = (".npy", ".nii", ".nii.gz")


def save_array(ctx: Workspace, array: np.ndarray, output_path: str, affine: np.ndarray | None = None) -> Path:
    """Write `array` into the workspace as .npy, or as NIfTI (with `affine`, identity if None)."""
    target = ctx.resolve_write(output_path)
    suffix = suffix_of(target)
    if suffix not in ARRAY_OUTPUTS:
        raise ToolError(f"output_path must end with .npy or .nii.gz (got '{output_path}')")
    target.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".npy":
        np.save(target, array)
    else:
        nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), str(target))
    return target


def default_output(source: MedImage, folder: str, tag: str) -> str:
    """'<folder>/<source stem>_<tag>.nii.gz' for NIfTI/DICOM volumes, else '.npy'."""
    name = Path(source.path).name
    stem = name[: len(name) - len(suffix_of(Path(name)))] or name
    suffix = ".nii.gz" if source.affine is not None and source.array.ndim >= 3 else ".npy"
    return f"{folder}/{stem}_{tag}{suffix}"
