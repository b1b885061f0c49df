"""load_med_data and check_3D on real files: NIfTI, real DICOM (file and series), real Br35H JPEGs, PNG, npy, TIFF."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import tifffile
from PIL import Image
from pydicom.data import get_testdata_file
from tools_fixtures import BR35H, roots, ws  # noqa: F401 (fixtures)

from medbuilder.protocol.tools import ToolError, Workspace, check_3D, load_med_data, load_medical

CT_SMALL = Path(get_testdata_file("CT_small.dcm"))


@pytest.fixture
def med_ws(roots) -> Workspace:
    """A workspace that may also read the real Br35H images and pydicom's test files (read-only)."""
    return Workspace.create(roots.workspace, [roots.data, BR35H, CT_SMALL.parent], output_chars=3000, script_timeout_s=30)


def write_series(folder: Path, n_slices: int = 4, dz: float = 2.5) -> None:
    """A DICOM series made from the real CT_small slice; slice k holds HU value 10*k; files and numbers shuffled."""
    folder.mkdir(parents=True)
    order = np.random.default_rng(0).permutation(n_slices)
    for k in range(n_slices):
        dataset = pydicom.dcmread(CT_SMALL)
        x, y, z = (float(v) for v in dataset.ImagePositionPatient)
        dataset.ImagePositionPatient = [x, y, z + dz * k]
        dataset.InstanceNumber = n_slices - k
        dataset.PixelData = np.full_like(dataset.pixel_array, 1024 + 10 * k).tobytes()
        dataset.save_as(folder / f"IM{order[k]:04d}.dcm")
    (folder / "README.txt").write_text("not a DICOM file")


def save_nifti(path: Path, array: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


def test_nifti_shape_spacing_orientation(med_ws, roots):
    affine = np.diag([-0.8, -0.8, 2.0, 1.0])
    save_nifti(roots.workspace / "vol.nii.gz", np.arange(24, dtype=np.int16).reshape(2, 3, 4), affine)
    image = load_med_data(med_ws, "vol.nii.gz")
    assert image.array.shape == (2, 3, 4) and image.array.dtype == np.int16
    assert image.spacing == pytest.approx((0.8, 0.8, 2.0)) and image.orientation == ("L", "P", "S")
    text = image.as_text()
    assert "shape (2, 3, 4)" in text and "orientation LPS" in text and "max 23" in text


def test_real_ct_dicom_file_in_hounsfield_units(med_ws):
    image = load_med_data(med_ws, str(CT_SMALL))
    raw = pydicom.dcmread(CT_SMALL).pixel_array
    assert image.array.shape == (128, 128) and image.spacing == pytest.approx((0.661468, 0.661468))
    assert np.allclose(image.array, raw.astype(float) - 1024)  # RescaleIntercept -1024 applied
    assert image.orientation == ("P", "L") and image.meta["modality"] == "CT"


def test_dicom_series_sorted_by_position_with_ras_affine(med_ws, roots):
    write_series(roots.workspace / "series")
    volume = load_med_data(med_ws, "series")
    assert volume.array.shape == (128, 128, 4) and volume.format == "DICOM series"
    assert volume.array[5, 7, :].tolist() == [0, 10, 20, 30]  # sorted along z, not by file name or InstanceNumber
    assert volume.spacing == pytest.approx((0.661468, 0.661468, 2.5)) and volume.orientation == ("L", "P", "S")
    # the same grid written as NIfTI with that affine agrees with the series: one convention for both formats
    save_nifti(roots.workspace / "mask.nii.gz", (volume.array > 15).astype(np.uint8), volume.affine)
    assert check_3D(med_ws, "series", "mask.nii.gz").ok


def test_folder_with_two_series_asks_which(med_ws, roots):
    write_series(roots.workspace / "mixed", n_slices=2)
    other = pydicom.dcmread(CT_SMALL)
    other.SeriesInstanceUID = "1.2.3.4"
    other.save_as(roots.workspace / "mixed" / "other.dcm")
    with pytest.raises(ToolError, match="holds 2 series.*series_uid"):
        load_med_data(med_ws, "mixed")
    assert load_med_data(med_ws, "mixed", series_uid="1.2.3.4").array.shape == (128, 128, 1)


def test_real_br35h_jpeg_png_npy_and_tiff(med_ws, roots):
    jpeg = BR35H / "yes" / "y1.jpg"
    before = jpeg.stat().st_mtime_ns
    image = load_med_data(med_ws, str(jpeg))
    with Image.open(jpeg) as reference:
        assert image.array.shape[:2] == (reference.height, reference.width)
    assert image.spacing == (1.0, 1.0) and not image.spacing_known and jpeg.stat().st_mtime_ns == before
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(roots.workspace / "gray.png")
    assert load_med_data(med_ws, "gray.png").array[7, 7] == 63
    np.save(roots.workspace / "arr.npy", np.ones((3, 4, 5), np.float32))
    assert load_med_data(med_ws, "arr.npy").array.shape == (3, 4, 5)
    tifffile.imwrite(roots.workspace / "stack.tif", np.zeros((6, 16, 16), np.uint16))
    assert load_med_data(med_ws, "stack.tif").array.shape == (6, 16, 16)


def test_truncated_files_give_a_clear_error_naming_the_file(med_ws, roots):
    data = (BR35H / "yes" / "y2.jpg").read_bytes()
    (roots.workspace / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ToolError, match=r"cut\.jpg could not be read as an image \(corrupted or truncated"):
        load_med_data(med_ws, "cut.jpg")
    for name in ("vol.nii", "vol.nii.gz"):
        full = save_nifti(roots.workspace / name, np.random.default_rng(0).random((32, 32, 32)), np.eye(4))
        full.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
        with pytest.raises(ToolError, match=rf"{name} could not be read as NIfTI \(corrupted or truncated"):
            load_med_data(med_ws, name)
    shutil.copy(CT_SMALL, roots.workspace / "cut.dcm")
    (roots.workspace / "cut.dcm").write_bytes(CT_SMALL.read_bytes()[:20_000])
    with pytest.raises(ToolError, match=r"cut\.dcm"):
        load_med_data(med_ws, "cut.dcm")


def test_unsupported_format_lists_the_supported_ones(med_ws, roots):
    (roots.workspace / "scan.mha").write_bytes(b"x")
    with pytest.raises(ToolError, match="not supported; supported: png"):
        load_med_data(med_ws, "scan.mha")


def test_check_3d_names_shape_spacing_and_orientation_mismatches(med_ws, roots):
    image = save_nifti(roots.workspace / "img.nii.gz", np.zeros((16, 16, 8), np.float32), np.diag([1.0, 1.0, 2.5, 1]))
    mask = np.zeros((16, 16, 8), np.uint8)
    mask[4:8, 4:8, 2:4] = 1
    save_nifti(roots.workspace / "good.nii.gz", mask, np.diag([1.0, 1.0, 2.5, 1]))
    good = check_3D(med_ws, "img.nii.gz", "good.nii.gz")
    assert good.ok and "binary mask (0 and 1)" in good.as_text()
    save_nifti(roots.workspace / "small.nii.gz", mask[:, :, :6], np.diag([1.0, 1.0, 2.5, 1]))
    small = check_3D(med_ws, str(image), "small.nii.gz")
    assert not small.ok and any(p.startswith("shape differs: image (16, 16, 8), mask (16, 16, 6)") for p in small.problems)
    save_nifti(roots.workspace / "thin.nii.gz", mask, np.diag([1.0, 1.0, 1.0, 1]))
    thin = check_3D(med_ws, "img.nii.gz", "thin.nii.gz")
    assert thin.problems == ["spacing differs: axis 2: image 2.5 mm, mask 1 mm"]
    save_nifti(roots.workspace / "flipped.nii.gz", mask, np.diag([-1.0, 1.0, 2.5, 1]))
    flipped = check_3D(med_ws, "img.nii.gz", "flipped.nii.gz")
    assert any("orientation differs: image RAS, mask LAS" in p for p in flipped.problems)
    save_nifti(roots.workspace / "permuted.nii.gz", mask.transpose(2, 0, 1), np.diag([2.5, 1.0, 1.0, 1]))
    permuted = check_3D(med_ws, "img.nii.gz", "permuted.nii.gz")
    assert any("another axis order" in p and "np.transpose(mask, (1, 2, 0))" in p for p in permuted.problems)


def test_check_3d_inspects_mask_values(med_ws, roots):
    affine = np.eye(4)
    save_nifti(roots.workspace / "img.nii.gz", np.zeros((8, 8, 8), np.float32), affine)
    save_nifti(roots.workspace / "empty.nii.gz", np.zeros((8, 8, 8), np.uint8), affine)
    assert "mask is empty (all zeros)" in check_3D(med_ws, "img.nii.gz", "empty.nii.gz").warnings
    soft = np.zeros((8, 8, 8), np.float32)
    soft[2:4] = 0.5
    save_nifti(roots.workspace / "soft.nii.gz", soft, affine)
    assert any("non-integers (e.g. 0.5)" in p for p in check_3D(med_ws, "img.nii.gz", "soft.nii.gz").problems)
    labels = np.zeros((8, 8, 8), np.uint8)
    labels[:2], labels[2:4] = 1, 2
    save_nifti(roots.workspace / "labels.nii.gz", labels, affine)
    assert check_3D(med_ws, "img.nii.gz", "labels.nii.gz").labels == [0, 1, 2]
