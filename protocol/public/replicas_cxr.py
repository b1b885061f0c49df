"""Replicas of the chest X-ray sets torchxrayvision knows (real label rows where it ships the table)."""

from __future__ import annotations

import ast
import json
from collections import Counter
from pathlib import Path

from medbuilder.protocol.public import finding_words, template
from medbuilder.protocol.public.replica_base import PER_CLASS, Replica, count, pick, stream, write_csv
from medbuilder.protocol.public.writers import write_dicom, write_image

def _nih(root: Path, finding: str) -> Replica:
    groups = {"pos": lambda r: finding in r["Finding Labels"].split("|"),
              "neg": lambda r: finding not in r["Finding Labels"].split("|")}
    picked = pick(stream("Data_Entry_2017_v2020.csv.gz"), groups)
    rows = picked["pos"] + picked["neg"]
    for i, row in enumerate(rows):
        write_image(root / f"images_{1 + i % 2:03d}" / "images" / row["Image Index"], seed=i)
    write_csv(root / "Data_Entry_2017_v2020.csv", rows)
    words = finding_words(template("nih-chestxray14"), finding)
    return Replica(root, {words["finding_lower"]: len(picked["pos"]), "no " + words["finding_lower"]: len(picked["neg"])},
                   records=len(rows), patients=len({r["Patient ID"] for r in rows}),
                   real_rows="rows of torchxrayvision's Data_Entry_2017_v2020.csv.gz")


def _chexpert(root: Path, finding: str) -> Replica:
    groups = {"pos": lambda r: r[finding] == "1.0", "neg": lambda r: r[finding] == "0.0",
              "blank": lambda r: r[finding] == "", "uncertain": lambda r: r[finding] == "-1.0"}
    picked = pick(stream("chexpert_train.csv.gz"), groups, per_group=2)
    rows = [r for g in picked.values() for r in g]
    for i, row in enumerate(rows):
        write_image(root / row["Path"].split("/", 1)[1], seed=i, kind="JPEG")
    write_csv(root / "train.csv", rows)
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
    picked = pick(stream("PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz"), groups)
    rows = picked["pos"] + picked["neg"]
    for i, row in enumerate(rows):
        write_image(root / row["ImageDir"] / row["ImageID"], seed=i, bits=16)
    write_csv(root / "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz", rows, gz=True)
    return Replica(root, {finding: len(picked["pos"]), "no " + finding: len(picked["neg"])}, records=len(rows),
                   patients=len({r["PatientID"] for r in rows}),
                   real_rows="rows of torchxrayvision's PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz")


def _rsna(root: Path, finding: str | None) -> Replica:
    headers = pick(stream("kaggle_stage_2_train_images_dicom_headers.csv.gz"),
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
    write_csv(root / "stage_2_train_labels.csv", rows)
    return Replica(root, count(labels), records=len(labels), patients=len(labels),
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
    write_csv(root / "train-rle.csv", rows)
    return Replica(root, count(labels), records=len(labels), patients=len(labels), real_rows="none (generated)")


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
    write_csv(root / "mimic-cxr-2.0.0-chexpert.csv.gz", label_rows, gz=True)
    write_csv(root / "mimic-cxr-2.0.0-split.csv.gz", split_rows, gz=True)
    return Replica(root, count(labels), records=len(labels), patients=len({r["subject_id"] for r in label_rows
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
    return Replica(root, count(labels), records=len(labels), split=dict(split), real_rows="none (generated)")


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
    write_csv(root / "indiana_reports.csv", rows)
    write_csv(root / "indiana_projections.csv", [{"uid": r["uid"], "filename": "", "projection": "Frontal"}
                                                  for r in rows])
    return Replica(root, records=records, patients=len([r for r in rows if r["findings"]]),
                   real_rows="report texts from torchxrayvision's NLMCXR_reports.tgz (one findings field emptied)")


BUILDERS = {"nih-chestxray14": _nih, "chexpert": _chexpert, "padchest": _padchest, "rsna-pneumonia": _rsna,
            "siim-pneumothorax": _siim, "mimic-cxr-jpg": _mimic, "chestx-det10": _chestx_det10,
            "iu-xray-images": _iu_xray}
