"""Replicas of M3Bench's datasets (generated rows and volumes, in each published layout)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from medbuilder.protocol.public.replica_base import PER_CLASS, Replica, count, write_csv
from medbuilder.protocol.public.writers import write_image, write_volume

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
    write_csv(root / "kidneyData.csv", [{"": i, "image_id": f"{k}- ({i + 1})", "path": "", "diag": k,
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
    write_csv(root / "ADNI1_Complete_1Yr_1.5T_12_05_2026.csv", rows)
    return Replica(root, count(labels), records=len(rows), patients=len({r["Subject"] for r in rows}))


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
    write_csv(root / "metadata.csv", rows)
    return Replica(root, count(labels), records=len(rows), patients=len({r["examId"] for r in rows}))


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
    write_csv(root / "dataset/radiology_text_reports/train_reports.csv", tables["train"])
    write_csv(root / "dataset/radiology_text_reports/validation_reports.csv", tables["valid"])
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


BUILDERS = {"cc-ccii": _cc_ccii, "ct-kidney": _ct_kidney, "adni": _adni, "kneemri": _kneemri, "btcv": _btcv,
            "msd-pancreas": _msd_pancreas, "oasis": _oasis, "verse": _verse, "covid19-ct-seg": _covid19_ct_seg,
            "instance2022": _instance2022, "ct-rate": _ct_rate, "radgenome-brain-mri": _radgenome}
