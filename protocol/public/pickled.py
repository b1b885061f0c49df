"""Volumes published as pickled numpy arrays (KneeMRI's .pck files), converted to NIfTI without trusting them.

A pickle can run any code when it is loaded. `load_array` unpickles with a whitelist: only what numpy
needs to rebuild an ndarray (its class, dtype and reconstructor, and bytes decoding); any other global,
such as os.system, is refused before it is called. The source files are only read.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import nibabel as nib
import numpy as np

ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}
MAX_BYTES = 2 << 30


class UnsafePickleError(ValueError):
    """The file is not a plain pickled numpy array; the message names the file and what it asked for."""


class _ArrayUnpickler(pickle.Unpickler):
    def __init__(self, file, source: Path):
        super().__init__(file, encoding="latin1")  # KneeMRI was pickled by Python 2
        self.source = source

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED:
            raise UnsafePickleError(f"{self.source}: the pickle asks for {module}.{name}, which a plain numpy array "
                                    "does not need; it was not loaded. Check where the file came from")
        return super().find_class(module, name)


def load_array(path: Path) -> np.ndarray:
    if path.is_symlink() or not path.is_file():
        raise UnsafePickleError(f"{path}: not a regular file (links are not followed)")
    if path.stat().st_size > MAX_BYTES:
        raise UnsafePickleError(f"{path}: larger than {MAX_BYTES >> 30} GiB; not a KneeMRI volume")
    try:
        array = _ArrayUnpickler(io.BytesIO(path.read_bytes()), path).load()
    except UnsafePickleError:
        raise
    except Exception as err:  # a truncated or foreign file: any unpickling error says the same
        raise UnsafePickleError(f"{path}: not a readable pickled array ({type(err).__name__}: {err})") from None
    if not isinstance(array, np.ndarray) or array.ndim != 3:
        raise UnsafePickleError(f"{path}: holds {type(array).__name__} {getattr(array, 'shape', '')}, not a 3D volume")
    return array


def to_nifti(source: Path, target: Path) -> tuple[int, ...]:
    """Write the volume in `source` (slices first, as KneeMRI stores it) to `target` (.nii.gz); returns its shape."""
    volume = np.ascontiguousarray(np.transpose(load_array(source), (2, 1, 0)))
    target.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), str(target))
    return volume.shape
