"""A picture made in memory (a PIL image) prepared by a predictor's own chain, as if it had been written
as a PNG and loaded from there.

The acquisition counterfactuals (re-padded, resampled copies of test images) used to be written as PNGs
and prepared from the files: the encoding and the decoding took about 11 of the 16 ms each copy cost. Here
the predictor's loading step runs with a reader that hands it the picture instead of opening a file, and
gets its array and metadata from the loader's own PIL reader (MONAI's ``PILReader.get_data``): the same
array, orientation and metadata the file would give, through the rest of the same chain.
``tests/test_preprocess_cache.py`` checks the result equals that of the written PNG.
"""

from __future__ import annotations

from pathlib import Path

import torch


class _PictureReader:
    """A MONAI image reader whose `read` returns a picture already in memory."""

    def __init__(self, picture, base):
        self.picture, self.base = picture, base

    def verify_suffix(self, filename) -> bool:
        return True

    def read(self, data, **kwargs):
        return self.base.converter(self.picture) if callable(self.base.converter) else self.picture

    def get_data(self, img):
        return self.base.get_data(img)


def pil_reader_of(load_step):
    """The PIL reader of a predictor's LoadImaged step (the one it uses for PNG files)."""
    from monai.data import PILReader

    readers = [r for r in getattr(load_step._loader, "readers", []) if isinstance(r, PILReader)]
    return readers[0] if readers else PILReader()


def split_chain(predictor):
    """The predictor's preprocessing as (its loading step, everything after it)."""
    from monai.transforms import Compose

    steps = list(predictor.preprocessing.transforms)
    return steps[0], Compose(steps[1:])


def prepare_picture(predictor, picture, name: str | Path) -> torch.Tensor:
    """The picture prepared by the predictor's chain, as the PNG file `name` holding it would be."""
    load, rest = split_chain(predictor)
    picture.format = "PNG"  # what PIL reports for the file; the loader keeps it in the metadata
    loaded = load({"image": str(name)}, reader=_PictureReader(picture, pil_reader_of(load)))
    return rest(loaded)["image"]
