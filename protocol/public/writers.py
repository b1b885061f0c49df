"""Tiny generated image files in the formats public datasets publish: PNG/JPEG, NIfTI, DICOM."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

SIZE = 32


def write_image(path: Path, seed: int, kind: str = "PNG", bits: int = 8) -> None:
    """A SIZE x SIZE grey image of generated noise (16-bit PNG where `bits` is 16)."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    if bits == 16:
        Image.fromarray(rng.integers(0, 4096, (SIZE, SIZE), dtype=np.uint16)).save(path, format="PNG")
    else:
        Image.fromarray(rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8), mode="L").save(path, format=kind)


def write_volume(path: Path, seed: int, labels: int = 0, shape: tuple[int, int, int] = (12, 12, 6)) -> None:
    """A NIfTI volume of generated noise; a mask with values 0..labels where `labels` > 0."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    if labels:
        data = rng.integers(0, labels + 1, shape).astype(np.uint8)
    else:
        data = rng.normal(0, 100, shape).astype(np.int16)
    nib.save(nib.Nifti1Image(data, np.diag([0.8, 0.8, 2.5, 1.0])), str(path))


def write_dicom(path: Path, seed: int, patient_id: str, sex: str, view: str) -> None:
    """A single-frame 16-bit MONOCHROME2 DICOM of generated noise, with the tags the cards read."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[str(path)])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.PatientSex, ds.ViewPosition, ds.Modality = patient_id, sex, view, "CR"
    ds.PatientName = "Generated^Replica"
    ds.Rows = ds.Columns = SIZE
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.random.default_rng(seed).integers(0, 4096, (SIZE, SIZE), dtype=np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
