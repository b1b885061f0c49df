"""Two real 3D T1 brain MRIs with brain masks, NIfTI, same file name in images/ and masks/.

Layout::

    brain-mask-3d/
      images/colin27.nii.gz       ch2.nii.gz from mricron-data, byte for byte (one person, with skull)
      images/mni152_2009.nii.gz   nilearn's MNI152 2009c T1, byte for byte (population average, skull-stripped)
      masks/colin27.nii.gz        1 = brain: ch2bet > 0, largest connected component
      masks/mni152_2009.nii.gz    1 = brain: nilearn.datasets.load_mni152_brain_mask(resolution=1)
      atlas/aal_colin27.nii.gz    AAL, 116 regions on Colin27's grid (aal.nii.gz, byte for byte)
      atlas/aal_labels.txt        "index name code" per region (aal.nii.txt)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medbuilder.protocol.datacard import Task
from medbuilder.protocol.datasets.base import (Item, Recipe, check_root, check_task, debian_file, nifti_gz,
                                               package_data)
from medbuilder.protocol.index import DataIndex, IndexRecord

MRICRON = "/usr/share/mricron/templates"
TRAIN, TEST = "colin27", "mni152_2009"


def _mricron(name: str) -> Path:
    return debian_file(f"{MRICRON}/{name}", "mricron-data")


def _mni_file() -> Path:
    return package_data("nilearn", "datasets", "data", "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
                        hint="nilearn==0.14.1")


def _colin_mask() -> bytes:
    import nibabel as nib
    from scipy import ndimage

    image = nib.load(_mricron("ch2.nii.gz"))
    brain = np.asarray(nib.load(_mricron("ch2bet.nii.gz")).dataobj) > 0
    parts, n = ndimage.label(brain)
    if n > 1:  # BET leaves ~100 specks of 1-4 voxels outside the brain
        brain = parts == np.argmax(np.bincount(parts.ravel())[1:]) + 1
    return nifti_gz(brain.astype(np.uint8), image.affine, image.header, "brain mask: ch2bet > 0, largest component")


def _mni_mask() -> bytes:
    import nibabel as nib
    from nilearn.datasets import load_mni152_brain_mask

    image = nib.load(_mni_file())
    mask = np.asarray(load_mni152_brain_mask(resolution=1).dataobj) > 0
    return nifti_gz(mask.astype(np.uint8), image.affine, image.header, "brain mask: nilearn load_mni152_brain_mask")


def sources() -> list[Path]:
    return [_mricron("ch2.nii.gz"), _mricron("ch2bet.nii.gz"), _mricron("aal.nii.gz"),
            _mricron("aal.nii.txt"), _mni_file()]


def plan(limit: int | None) -> list[Item]:
    sources()  # fail early, naming the missing package
    return [
        Item(f"images/{TRAIN}.nii.gz", source=_mricron("ch2.nii.gz")),
        Item(f"masks/{TRAIN}.nii.gz", make=_colin_mask),
        Item(f"images/{TEST}.nii.gz", source=_mni_file()),
        Item(f"masks/{TEST}.nii.gz", make=_mni_mask),
        Item("atlas/aal_colin27.nii.gz", source=_mricron("aal.nii.gz")),
        Item("atlas/aal_labels.txt", source=_mricron("aal.nii.txt")),
    ]


def index(root: Path, task: Task) -> DataIndex:
    root = check_root(RECIPE, root, "images", "masks")

    def record(case: str, group: str) -> IndexRecord:
        return IndexRecord(image=str(root / "images" / f"{case}.nii.gz"),
                           mask=str(root / "masks" / f"{case}.nii.gz"), patient_id=case, group=group)

    return DataIndex(task=task, train=[record(TRAIN, "single subject")],
                     test=[record(TEST, "population average")],
                     label_dict={"background": 0, "brain": 1})


RECIPE = Recipe(
    name="brain-mask-3d",
    version="1",
    summary="Two real 3D T1 brain MRIs (Colin27, MNI152 2009) with brain masks, NIfTI",
    tasks=(Task.segmentation,),
    generated=False,
    source="Debian mricron-data (Colin27 ch2, ch2bet, AAL) and nilearn 0.14.1 (MNI152 2009c T1)",
    plan=plan,
    sources=sources,
    index=lambda root, task: index(root, check_task(RECIPE, task)),
    limit_note="limit: ignored (there are only two volumes)",
)
