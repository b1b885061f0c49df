"""DICOM reading for load_med_data: one file, or a series folder sorted along the slice normal.

Arrays keep pydicom's (rows, cols) layout for a single image. A series becomes a
volume indexed (x, y, z) = (column, row, slice), like nibabel and MONAI, with an
affine in RAS+ millimetres built from ImageOrientationPatient,
ImagePositionPatient and PixelSpacing (DICOM itself is LPS+). Pixel values go
through the modality LUT (RescaleSlope/Intercept), so CT is in Hounsfield units.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut

from medbuilder.protocol.tools.context import ToolError, natural_key

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def read_dicom_file(path: Path) -> tuple[np.ndarray, dict]:
    """Pixels (modality LUT applied) and spatial metadata of one DICOM file."""
    dataset = _read(path)
    pixels = _pixels(dataset, path)
    meta = _meta(dataset)
    row_dir, col_dir = meta.pop("directions", (None, None))
    spacing = meta.pop("pixel_spacing", None)
    meta["spacing_known"] = spacing is not None
    meta["spacing"] = tuple(spacing) if spacing else (1.0,) * min(pixels.ndim, 2)
    if pixels.ndim == 3 and meta.get("samples", 1) == 1:  # multi-frame: frames first
        meta["spacing"] = (float(dataset.get("SliceThickness", 1.0) or 1.0), *meta["spacing"])
    if row_dir is not None and pixels.ndim == 2:
        meta["directions"] = [col_dir, row_dir]  # array axis 0 walks down the rows (column direction)
    return pixels, meta


def read_dicom_series(folder: Path, series_uid: str | None = None) -> tuple[np.ndarray, dict]:
    """A (x, y, z) volume from the DICOM files in `folder`, with its RAS affine."""
    headers = _series_headers(folder, series_uid)
    headers = _sorted_slices(headers)
    first = headers[0][1]
    slices = [_pixels(_read(path), path) for path, _ in headers]
    shapes = {s.shape for s in slices}
    if len(shapes) > 1:
        raise ToolError(f"the slices in {folder} differ in size {sorted(shapes)}; they are not one series")
    volume = np.stack(slices, axis=-1).transpose(1, 0, 2)  # (rows, cols, z) -> (x=cols, y=rows, z)
    meta = _meta(first)
    row_dir, col_dir = meta.pop("directions", (np.array([1.0, 0, 0]), np.array([0, 1.0, 0])))
    row_spacing, col_spacing = meta.pop("pixel_spacing", None) or (1.0, 1.0)
    normal = np.cross(row_dir, col_dir)
    positions = [np.asarray(h.get("ImagePositionPatient", [0, 0, 0]), float) for _, h in headers]
    steps = np.diff([p @ normal for p in positions])
    dz = float(np.median(steps)) if len(steps) else float(first.get("SliceThickness", 1.0) or 1.0)
    affine = np.eye(4)
    affine[:3, 0] = LPS_TO_RAS @ row_dir * col_spacing
    affine[:3, 1] = LPS_TO_RAS @ col_dir * row_spacing
    affine[:3, 2] = LPS_TO_RAS @ normal * (dz if dz else 1.0)
    affine[:3, 3] = LPS_TO_RAS @ positions[0]
    meta.update(
        affine=affine, spacing=(float(col_spacing), float(row_spacing), abs(dz) or 1.0),
        spacing_known=True, slices=len(slices), files=[str(p) for p, _ in headers],
    )
    if len(steps) and np.ptp(steps) > 0.01 * max(abs(dz), 1e-6) + 1e-3:
        meta["warning"] = f"uneven slice spacing: steps from {steps.min():.3f} to {steps.max():.3f} mm"
    return volume, meta


def _read(path: Path, **kwargs) -> pydicom.Dataset:
    try:
        return pydicom.dcmread(path, **kwargs)
    except InvalidDicomError as err:
        raise ToolError(f"{path} is not a DICOM file ({err}); check the path or the file's format") from None
    except (OSError, EOFError, ValueError, KeyError) as err:
        raise ToolError(f"{path} could not be read as DICOM (corrupted or truncated?): {err}") from None


def _pixels(dataset: pydicom.Dataset, path: Path) -> np.ndarray:
    if "PixelData" not in dataset:
        raise ToolError(f"{path} is a DICOM file without pixel data (e.g. a report or DICOMDIR); pick an image file")
    try:
        pixels = apply_modality_lut(dataset.pixel_array, dataset)
    except Exception as err:  # pydicom raises many kinds here; the file is the problem
        raise ToolError(
            f"{path}: the pixel data could not be decoded (truncated, or compressed with a missing codec?): {err}"
        ) from None
    return pixels.astype(np.float32) if pixels.dtype.kind == "f" else pixels


# Descriptive header fields a label, a patient id, a modality or a subgroup may be read from (no names or birth
# dates).
TEXT_TAGS = ("Modality", "BodyPartExamined", "StudyDescription", "SeriesDescription", "ProtocolName", "ImageComments",
             "PatientID", "StudyID", "SeriesNumber", "Laterality", "ViewPosition", "ImageType", "Manufacturer",
             "InstitutionName", "ContrastBolusAgent", "ScanningSequence", "SeriesInstanceUID", "PatientSex",
             "PatientAge")


def text_tags(dataset: pydicom.Dataset) -> dict[str, str]:
    """The `TEXT_TAGS` present in a header, as short text."""
    tags = {}
    for keyword in TEXT_TAGS:
        element = dataset.get(keyword)
        value = "\\".join(map(str, element)) if isinstance(element, (list, pydicom.multival.MultiValue)) else element
        if value not in (None, ""):
            tags[keyword] = str(value)[:80]
    return tags


def _meta(dataset: pydicom.Dataset) -> dict:
    meta = {
        "modality": str(dataset.get("Modality", "")),
        "photometric": str(dataset.get("PhotometricInterpretation", "")),
        "samples": int(dataset.get("SamplesPerPixel", 1) or 1),
        "tags": text_tags(dataset),
    }
    spacing = dataset.get("PixelSpacing") or dataset.get("ImagerPixelSpacing")
    if spacing and all(float(s) > 0 for s in spacing):
        meta["pixel_spacing"] = (float(spacing[0]), float(spacing[1]))
    orientation = dataset.get("ImageOrientationPatient")
    if orientation and len(orientation) == 6:
        cosines = np.asarray(orientation, float)
        meta["directions"] = (cosines[:3], cosines[3:])
    return meta


def _series_headers(folder: Path, series_uid: str | None) -> list[tuple[Path, pydicom.Dataset]]:
    by_series: dict[str, list[tuple[Path, pydicom.Dataset]]] = {}
    for path in sorted((p for p in folder.iterdir() if p.is_file()), key=lambda p: natural_key(p.name)):
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, EOFError, ValueError):
            continue  # not DICOM (a readme, a DICOMDIR index): skip it
        if "Rows" in header:
            by_series.setdefault(str(header.get("SeriesInstanceUID", "")), []).append((path, header))
    if not by_series:
        raise ToolError(f"no DICOM image files found in {folder}; give a folder holding one series, or a single file")
    if series_uid is not None:
        if series_uid not in by_series:
            raise ToolError(f"series {series_uid} is not in {folder}; present: {sorted(by_series)}")
        return by_series[series_uid]
    if len(by_series) > 1:
        counts = ", ".join(f"{uid} ({len(files)} files)" for uid, files in by_series.items())
        raise ToolError(f"{folder} holds {len(by_series)} series: {counts}; pass series_uid to choose one")
    return next(iter(by_series.values()))


def _sorted_slices(headers: list[tuple[Path, pydicom.Dataset]]) -> list[tuple[Path, pydicom.Dataset]]:
    """Sort along the slice normal (ImagePositionPatient), else by InstanceNumber, else by file name."""
    first = headers[0][1]
    orientation = first.get("ImageOrientationPatient")
    if orientation and all("ImagePositionPatient" in h for _, h in headers):
        cosines = np.asarray(orientation, float)
        normal = np.cross(cosines[:3], cosines[3:])
        return sorted(headers, key=lambda item: float(np.asarray(item[1].ImagePositionPatient, float) @ normal))
    if all("InstanceNumber" in h for _, h in headers):
        return sorted(headers, key=lambda item: int(item[1].InstanceNumber))
    return headers
