"""Generated miniature replicas of the public datasets' published layouts, for tests and demos.

Each replica has the published folder names, file names and table columns, a few tiny generated images,
and a GENERATED_REPLICA.txt that says so. Label rows are real where torchxrayvision ships the table
(NIH ChestX-ray14, CheXpert, PadChest; the IU-Xray report texts) and generated elsewhere. The builder
also returns what a correct indexing must find (per class, records, patients, split), computed from the
rows it wrote, not by the indexer.
"""

from __future__ import annotations

import ast
import csv
import gzip
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from medbuilder.protocol.datasets.base import package_data
from medbuilder.protocol.public import REPLICA_MARK, finding_words, template
from medbuilder.protocol.public.writers import write_dicom, write_image, write_volume

PER_CLASS = 3


@dataclass
class Replica:
    root: Path
    per_class: dict[str, int] = field(default_factory=dict)
    records: int = 0
    patients: int | None = None
    split: dict[str, int] | None = None
    pairs: list[tuple[str, str]] = field(default_factory=list)  # (image, mask), relative to the root
    real_rows: str = ""


def xrv_table(name: str) -> Path:
    """A label table torchxrayvision ships (found without importing it: that loads torch)."""
    return package_data("torchxrayvision", "data", name, hint="torchxrayvision==1.5.7")


def _stream(name: str):
    with gzip.open(xrv_table(name), "rt", encoding="utf-8", newline="") as handle:
        yield from csv.DictReader(handle)


def _pick(rows, groups: dict[str, callable], per_group: int = PER_CLASS, key=None) -> dict[str, list[dict]]:
    """The first `per_group` rows of each group (a row goes to the first group whose test it passes)."""
    picked: dict[str, list[dict]] = {g: [] for g in groups}
    for row in rows:
        for name, test in groups.items():
            if test(row):
                if len(picked[name]) < per_group:
                    picked[name].append(row)
                break
        if all(len(v) == per_group for v in picked.values()):
            break
    return picked


def _write_csv(path: Path, rows: list[dict], columns: list[str] | None = None, gz: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = columns or list(rows[0])
    opener = gzip.open if gz else open
    with opener(path, "wt", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _count(labels) -> dict[str, int]:
    return dict(Counter(labels))


# ---- chest X-ray sets torchxrayvision knows ------------------------------------------------------

def _nih(root: Path, finding: str) -> Replica:
    groups = {"pos": lambda r: finding in r["Finding Labels"].split("|"),
              "neg": lambda r: finding not in r["Finding Labels"].split("|")}
    picked = _pick(_stream("Data_Entry_2017_v2020.csv.gz"), groups)
    rows = picked["pos"] + picked["neg"]
    for i, row in enumerate(rows):
        write_image(root / f"images_{1 + i % 2:03d}" / "images" / row["Image Index"], seed=i)
    _write_csv(root / "Data_Entry_2017_v2020.csv", rows)
    words = finding_words(template("nih-chestxray14"), finding)
    return Replica(root, {words["finding_lower"]: len(picked["pos"]), "no " + words["finding_lower"]: len(picked["neg"])},
                   records=len(rows), patients=len({r["Patient ID"] for r in rows}),
                   real_rows="rows of torchxrayvision's Data_Entry_2017_v2020.csv.gz")


def _chexpert(root: Path, finding: str) -> Replica:
    groups = {"pos": lambda r: r[finding] == "1.0", "neg": lambda r: r[finding] == "0.0",
              "blank": lambda r: r[finding] == "", "uncertain": lambda r: r[finding] == "-1.0"}
    picked = _pick(_stream("chexpert_train.csv.gz"), groups, per_group=2)
    rows = [r for g in picked.values() for r in g]
    for i, row in enumerate(rows):
        write_image(root / row["Path"].split("/", 1)[1], seed=i, kind="JPEG")
    _write_csv(root / "train.csv", rows)
    word = finding.lower()
    kept = [r for r in rows if r[finding] != "-1.0"]
    return Replica(root, {word: len(picked["pos"]), "no " + word: len(picked["neg"]) + len(picked["blank"])},
                   records=len(kept), patients=len({r["Path"].split("/")[2] for r in kept}),
                   real_rows="rows of torchxrayvision's chexpert_train.csv.gz (uncertain -1.0 rows are left out)")


def _padchest_labels(row: dict) -> list[str]:
    try:
        return [s.strip() for s in ast.literal_eval(row["Labels"] or "[]")]
    except (ValueError, SyntaxError):
        return []


def _padchest(root: Path, finding: str) -> Replica:
    groups = {"pos": lambda r: finding in _padchest_labels(r), "neg": lambda r: finding not in _padchest_labels(r)}
    picked = _pick(_stream("PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz"), groups)
    rows = picked["pos"] + picked["neg"]
    for i, row in enumerate(rows):
        write_image(root / row["ImageDir"] / row["ImageID"], seed=i, bits=16)
    _write_csv(root / "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz", rows, gz=True)
    return Replica(root, {finding: len(picked["pos"]), "no " + finding: len(picked["neg"])}, records=len(rows),
                   patients=len({r["PatientID"] for r in rows}),
                   real_rows="rows of torchxrayvision's PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz")


def _rsna(root: Path, finding: str | None) -> Replica:
    headers = _pick(_stream("kaggle_stage_2_train_images_dicom_headers.csv.gz"),
                    {"AP": lambda r: r["ViewPosition"] == "AP", "PA": lambda r: r["ViewPosition"] == "PA"})
    rows, labels = [], []
    for i, head in enumerate(headers["AP"] + headers["PA"]):
        target = i % 2  # generated: the label table is not shipped
        write_dicom(root / "stage_2_train_images" / head["Filename"], seed=i, patient_id=head["PatientID"],
                    sex=head["PatientSex"], view=head["ViewPosition"])
        boxes = [("264", "152", "213", "379"), ("562", "152", "256", "453")] if target else [("", "", "", "")]
        rows += [{"patientId": head["PatientID"], "x": x, "y": y, "width": w, "height": h, "Target": target}
                 for x, y, w, h in boxes]  # one row per box, as published
        labels.append("pneumonia" if target else "no pneumonia")
    _write_csv(root / "stage_2_train_labels.csv", rows)
    return Replica(root, _count(labels), records=len(labels), patients=len(labels),
                   real_rows="patient ids, sex and view from torchxrayvision's DICOM header table; Target generated")


def _siim(root: Path, finding: str | None) -> Replica:
    rows, labels = [], []
    for i in range(2 * PER_CLASS):
        image_id = f"1.2.276.0.7230010.3.1.4.8323329.{1000 + i}.1517875166.{87 + i}"
        study, series = f"1.2.276.0.7230010.3.1.2.8323329.{1000 + i}", f"1.2.276.0.7230010.3.1.3.8323329.{1000 + i}"
        write_dicom(root / "dicom-images-train" / study / series / f"{image_id}.dcm", seed=i,
                    patient_id=f"{i:08x}-siim", sex="MF"[i % 2], view="PA")
        positive = i < PER_CLASS
        for rle in (["175349 7 1013 12 1009 17", "318925 4 1019 8"][: 1 + (i == 0)] if positive else ["-1"]):
            rows.append({"ImageId": image_id, " EncodedPixels": " " + rle})  # the published header has the space
        labels.append("pneumothorax" if positive else "no pneumothorax")
    _write_csv(root / "train-rle.csv", rows)
    return Replica(root, _count(labels), records=len(labels), patients=len(labels), real_rows="none (generated)")


def _mimic(root: Path, finding: str) -> Replica:
    values = ["1.0", "1.0", "0.0", "", "-1.0", "0.0"]
    splits = ["train", "validate", "train", "test", "train", "test"]
    label_rows, split_rows, labels, split = [], [], [], Counter()
    for i, (value, part) in enumerate(zip(values, splits)):
        subject, study = 10000032 + i // 2, 50414267 + i
        label_rows.append({"subject_id": subject, "study_id": study, finding: value, "No Finding": ""})
        for view in range(1 + (i == 0)):
            dicom_id = f"{i:02d}{view}a9f1b-5c7a4e2b-8f3d1c6e-0b9a7d2f-{i:08d}"
            write_image(root / "files" / f"p{str(subject)[:2]}" / f"p{subject}" / f"s{study}" / f"{dicom_id}.jpg",
                        seed=10 * i + view, kind="JPEG")
            split_rows.append({"dicom_id": dicom_id, "study_id": study, "subject_id": subject, "split": part})
            if value != "-1.0":
                labels.append(finding.lower() if value == "1.0" else "no " + finding.lower())
                split["test" if part == "test" else "train"] += 1
    _write_csv(root / "mimic-cxr-2.0.0-chexpert.csv.gz", label_rows, gz=True)
    _write_csv(root / "mimic-cxr-2.0.0-split.csv.gz", split_rows, gz=True)
    return Replica(root, _count(labels), records=len(labels), patients=len({r["subject_id"] for r in label_rows
                                                                             if r[finding] != "-1.0"}),
                   split=dict(split), real_rows="none (generated; MIMIC-CXR is credentialed)")


def _chestx_det10(root: Path, finding: str | None) -> Replica:
    syms = [["Effusion"], ["Nodule", "Mass"], ["Fracture"], [], [], []]
    labels, split = [], Counter()
    for part in ("train", "test"):
        records = []
        for i, found in enumerate(syms):
            name = f"{36199 + i + (100 if part == 'test' else 0)}.png"
            write_image(root / f"{part}_data" / name, seed=i)
            records.append({"file_name": name, "syms": found, "boxes": [[88, 420, 402, 761]] * len(found)})
            labels.append("abnormal" if found else "normal")
            split[part] += 1
        (root / f"{part}.json").write_text(json.dumps(records), encoding="utf-8")
    return Replica(root, _count(labels), records=len(labels), split=dict(split), real_rows="none (generated)")


def _iu_xray(root: Path, finding: str | None) -> Replica:
    from medbuilder.protocol.datasets.iu_xray import _members, parse_report, source_archive

    reports = [parse_report(name, data) for name, data in list(_members(source_archive()).items())[:8]]
    rows, records = [], 0
    for i, report in enumerate(reports[:5]):
        uid = int(report["uid"].removeprefix("CXR"))
        findings = report["findings"] if i != 4 else None  # the published table has reports without findings
        rows.append({"uid": uid, "MeSH": ";".join(report["mesh_major"]), "Problems": "", "image": "Xray Chest PA",
                     "indication": report["indication"] or "", "comparison": report["comparison"] or "",
                     "findings": findings or "", "impression": report["impression"] or ""})
        for j, image_id in enumerate(report["image_ids"][:2] or [f"{uid}_IM-0001-4001"]):
            write_image(root / "images" / "images_normalized" / f"{uid}_IM-{1000 + i:04d}-{1001 + j}.dcm.png", seed=i)
            records += bool(findings)
    _write_csv(root / "indiana_reports.csv", rows)
    _write_csv(root / "indiana_projections.csv", [{"uid": r["uid"], "filename": "", "projection": "Frontal"}
                                                  for r in rows])
    return Replica(root, records=records, patients=len([r for r in rows if r["findings"]]),
                   real_rows="report texts from torchxrayvision's NLMCXR_reports.tgz (one findings field emptied)")


# ---- M3Bench's datasets ---------------------------------------------------------------------------

def _folder_classes(root: Path, folders: dict[str, str], per_class: int, kind: str, pattern: str) -> Replica:
    counts = {}
    for c, (label, folder) in enumerate(folders.items()):
        for i in range(per_class):
            write_image(root / folder / pattern.format(label=label, i=i + 1, p=i // 2), seed=10 * c + i, kind=kind)
        counts[label] = per_class
    return Replica(root, counts, records=sum(counts.values()))


def _cc_ccii(root: Path, finding: str | None) -> Replica:
    counts, patients = {}, set()
    for c, label in enumerate(["NCP", "CP", "Normal"]):
        n = 0
        for patient in range(2):
            for scan in range(1 + (patient == 0)):
                for s in range(2):
                    write_image(root / label / f"{c}{patient + 1:03d}" / f"{1000 + scan}" / f"{s:04d}.png",
                                seed=100 * c + 10 * patient + s)
                    n += 1
            patients.add((label, patient))
        counts[label] = n
    return Replica(root, counts, records=sum(counts.values()), patients=len(patients))


def _ct_kidney(root: Path, finding: str | None) -> Replica:
    top = root / "CT-KIDNEY-DATASET-Normal-Cyst-Tumor-Stone" / "CT-KIDNEY-DATASET-Normal-Cyst-Tumor-Stone"
    replica = _folder_classes(top, {k: k for k in ["Cyst", "Normal", "Stone", "Tumor"]}, PER_CLASS, "JPEG",
                              "{label}- ({i}).jpg")
    _write_csv(root / "kidneyData.csv", [{"": i, "image_id": f"{k}- ({i + 1})", "path": "", "diag": k,
                                           "target": t, "Class": k} for t, k in enumerate(replica.per_class)
                                          for i in range(PER_CLASS)])
    replica.root = root
    return replica


def _adni(root: Path, finding: str | None) -> Replica:
    rows, labels = [], []
    for i, (group, sex) in enumerate([("AD", "M"), ("AD", "F"), ("CN", "F"), ("CN", "M"), ("MCI", "M"), ("MCI", "F")]):
        subject, image_id = f"{'002' if i < 3 else '941'}_S_{1000 + i // 2:04d}", f"I{45108 + i}"
        date = f"2006-04-{18 + i:02d}_08_20_30.0"
        folder = root / "ADNI" / subject / "MPR__GradWarp__B1_Correction__N3__Scaled" / date / image_id
        write_volume(folder / f"ADNI_{subject}_MR_MPR__GradWarp__B1_Correction__N3__Scaled_Br_20070319_S{13400 + i}_"
                              f"{image_id}.nii", seed=i)
        rows.append({"Image Data ID": image_id, "Subject": subject, "Group": group, "Sex": sex, "Age": 70 + i,
                     "Visit": "sc", "Modality": "MRI", "Description": "MPR; GradWarp; B1 Correction; N3; Scaled",
                     "Type": "Processed", "Acq Date": f"4/{18 + i}/2006", "Format": "NiFTI", "Downloaded": ""})
        labels.append(group)
    _write_csv(root / "ADNI1_Complete_1Yr_1.5T_12_05_2026.csv", rows)
    return Replica(root, _count(labels), records=len(rows), patients=len({r["Subject"] for r in rows}))


def _kneemri(root: Path, finding: str | None) -> Replica:
    import pickle

    import numpy as np

    rows, labels = [], []
    grades = {"0": "healthy", "1": "partial tear", "2": "complete rupture"}
    for i, grade in enumerate("001122"):
        exam, name = 329637 + i // 2, f"{329637 + i // 2}-{8 + i % 2}.pck"
        volume = np.random.default_rng(i).integers(0, 2048, (6, 16, 16), dtype=np.uint16)  # (slices, rows, cols)
        (root / f"vol0{1 + i % 2}").mkdir(parents=True, exist_ok=True)
        (root / f"vol0{1 + i % 2}" / name).write_bytes(pickle.dumps(volume, protocol=2))
        rows.append({"examId": exam, "seriesNo": 8 + i % 2, "aclDiagnosis": grade, "kneeLR": i % 2, "roiX": 4,
                     "roiY": 5, "roiZ": 1, "roiHeight": 6, "roiWidth": 6, "roiDepth": 3, "volumeFilename": name})
        labels.append(grades[grade])
    _write_csv(root / "metadata.csv", rows)
    return Replica(root, _count(labels), records=len(rows), patients=len({r["examId"] for r in rows}))


def _pairs(root: Path, pairs: list[tuple[str, str]], labels: int = 1) -> Replica:
    for i, (image, mask) in enumerate(pairs):
        write_volume(root / image, seed=i)
        write_volume(root / mask, seed=i, labels=labels)
    return Replica(root, records=len(pairs), pairs=pairs)


def _btcv(root: Path, finding: str | None) -> Replica:
    base = "Abdomen/RawData/Training"
    replica = _pairs(root, [(f"{base}/img/img{n:04d}.nii.gz", f"{base}/label/label{n:04d}.nii.gz") for n in (1, 2, 5)],
                     labels=13)
    write_volume(root / "Abdomen/RawData/Testing/img/img0061.nii.gz", seed=9)  # no labels are published for these
    return replica


def _msd_pancreas(root: Path, finding: str | None) -> Replica:
    top = root / "Task07_Pancreas"
    numbers = [1, 4, 5]
    replica = _pairs(top, [(f"imagesTr/pancreas_{n:03d}.nii.gz", f"labelsTr/pancreas_{n:03d}.nii.gz") for n in numbers],
                     labels=2)
    write_volume(top / "imagesTs/pancreas_002.nii.gz", seed=7)
    for folder in ("imagesTr", "labelsTr"):  # the published tar carries macOS resource forks beside the volumes
        (top / folder / "._pancreas_001.nii.gz").write_bytes(b"\0\5\26\7\0\2\0\0Mac OS X        ")
    document = {"name": "Pancreas", "tensorImageSize": "3D", "modality": {"0": "CT"},
                "labels": {"0": "background", "1": "pancreas", "2": "cancer"}, "numTraining": len(numbers),
                "numTest": 1, "training": [{"image": f"./imagesTr/pancreas_{n:03d}.nii.gz",
                                            "label": f"./labelsTr/pancreas_{n:03d}.nii.gz"} for n in numbers],
                "test": ["./imagesTs/pancreas_002.nii.gz"]}
    (top / "dataset.json").write_text(json.dumps(document, indent=4), encoding="utf-8")
    replica.root = top
    return replica


def _oasis(root: Path, finding: str | None) -> Replica:
    pairs = []
    for n in (1, 2, 4):
        case = f"OASIS_OAS1_{n:04d}_MR1"
        pairs.append((f"{case}/aligned_norm.nii.gz", f"{case}/aligned_seg35.nii.gz"))
        write_volume(root / case / "aligned_seg4.nii.gz", seed=n, labels=4)
        write_volume(root / case / "aligned_orig.nii.gz", seed=n)
        (root / case / "seg35.txt").parent.mkdir(parents=True, exist_ok=True)
        (root / case / "seg35.txt").write_text("0 Unknown\n1 Left-Cerebral-White-Matter\n", encoding="utf-8")
    replica = _pairs(root, pairs, labels=35)
    replica.patients = len(pairs)
    return replica


def _verse(root: Path, finding: str | None) -> Replica:
    pairs = []
    for n in ("004", "005", "006"):
        sub = f"sub-verse{n}"
        pairs.append((f"rawdata/{sub}/{sub}_ct.nii.gz", f"derivatives/{sub}/{sub}_seg-vert_msk.nii.gz"))
        (root / "derivatives" / sub).mkdir(parents=True, exist_ok=True)
        (root / "derivatives" / sub / f"{sub}_seg-subreg_ctd.json").write_text(
            json.dumps([{"direction": ["P", "I", "R"]}, {"label": 20, "X": 80.1, "Y": 60.2, "Z": 40.3}]),
            encoding="utf-8")
        write_image(root / "derivatives" / sub / f"{sub}_seg-vert_snp.png", seed=int(n))
    replica = _pairs(root, pairs, labels=25)
    replica.patients = len(pairs)
    return replica


def _covid19_ct_seg(root: Path, finding: str | None) -> Replica:
    names = ["coronacases_001", "coronacases_002", "radiopaedia_4_85506_1"]
    for i, name in enumerate(names):
        write_volume(root / "Lung_Mask" / f"{name}.nii.gz", seed=i, labels=2)
    return _pairs(root, [(f"COVID-19-CT-Seg_20cases/{n}.nii.gz", f"Infection_Mask/{n}.nii.gz") for n in names])


def _instance2022(root: Path, finding: str | None) -> Replica:
    return _pairs(root, [(f"train_2/data/{n:03d}.nii.gz", f"train_2/label/{n:03d}.nii.gz") for n in (1, 2, 3)])


def _ct_rate(root: Path, finding: str | None) -> Replica:
    tables, split = {"train": [], "valid": []}, Counter()
    for part, cases in (("train", (1, 2)), ("valid", (1,))):
        for case in cases:
            for recon in (1, 2):
                name = f"{part}_{case}_a_{recon}.nii.gz"
                write_volume(root / "dataset" / part / f"{part}_{case}" / f"{part}_{case}_a" / name, seed=case + recon)
                tables[part].append({"VolumeName": name, "ClinicalInformation_EN": "Not given.",
                                     "Technique_EN": "Non-contrast chest CT.",
                                     "Findings_EN": f"Generated findings text {part} {case}: no consolidation.",
                                     "Impressions_EN": "No acute finding."})
                split["test" if part == "valid" else "train"] += 1
    _write_csv(root / "dataset/radiology_text_reports/train_reports.csv", tables["train"])
    _write_csv(root / "dataset/radiology_text_reports/validation_reports.csv", tables["valid"])
    return Replica(root, records=sum(split.values()), patients=3, split=dict(split), real_rows="none (generated)")


def _radgenome(root: Path, finding: str | None) -> Replica:
    records = 0
    for source, cases in (("BraTS2021", ["BraTS2021_00000", "BraTS2021_00002"]), ("BraTS-MEN", ["BraTS-MEN-00004-000"])):
        for i, case in enumerate(cases):
            for seq in ("t1c", "t1n", "t2w", "t2f"):
                write_volume(root / source / case / f"{case}-{seq}.nii.gz", seed=i)
            records += 1
        (root / source / "global_finding.json").write_text(
            json.dumps({c: f"Generated report for {c}: a mass in the left frontal lobe." for c in cases}), encoding="utf-8")
    return Replica(root, records=records, real_rows="none (generated)")


BUILDERS = {
    "nih-chestxray14": _nih, "chexpert": _chexpert, "padchest": _padchest, "rsna-pneumonia": _rsna,
    "siim-pneumothorax": _siim, "mimic-cxr-jpg": _mimic, "chestx-det10": _chestx_det10,
    "iu-xray-images": _iu_xray, "cc-ccii": _cc_ccii, "ct-kidney": _ct_kidney, "adni": _adni, "btcv": _btcv,
    "msd-pancreas": _msd_pancreas, "oasis": _oasis, "verse": _verse, "covid19-ct-seg": _covid19_ct_seg,
    "instance2022": _instance2022, "kneemri": _kneemri, "ct-rate": _ct_rate, "radgenome-brain-mri": _radgenome,
}


def make_replica(name: str, target: Path, finding: str | None = None) -> Replica:
    """Write a generated replica of public dataset `name` into the new (or empty) folder `target`."""
    tpl = template(name)
    if name not in BUILDERS:
        raise KeyError(f"no replica is made for '{name}'")
    target = Path(target)
    if target.exists() and any(target.iterdir()):
        raise FileExistsError(f"{target} is not empty; give a new folder for the replica")
    target.mkdir(parents=True, exist_ok=True)
    words = finding_words(tpl, finding)
    replica = BUILDERS[name](target, words.get("finding"))
    (replica.root / REPLICA_MARK).write_text(
        f"GENERATED replica of the published layout of {tpl.title}, made by `medbuilder data replica`.\n"
        f"Its images are generated noise, not patients' images. Real label rows: {replica.real_rows or 'none'}.\n",
        encoding="utf-8")
    return replica

