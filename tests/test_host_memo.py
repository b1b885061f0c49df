"""The host's per-image memo (cache/host_memo.py): region-of-interest masks and acquisition features are
computed once per image content and code, outside every dataset's part of the store, and never follow a link.
Real Br35H JPEGs."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from medbuilder.cache.host_memo import MEMO_MIN_PIXELS, HostMemo, memoized_detector
from medbuilder.cache.store import HOST_PART, PreprocessStore
from medbuilder.protocol.confounders import cached_roi_detector, head_mask
from medbuilder.review import acquisition
from medbuilder.settings import Settings

sys.path.insert(0, str(Path(__file__).parent))
from template_data import _br35h_dir  # noqa: E402


@pytest.fixture()
def settings(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDBUILDER_CACHE_DIR", str(tmp_path / "store"))
    from medbuilder.settings import get_settings

    get_settings.cache_clear()
    yield Settings(cache_dir=tmp_path / "store")
    get_settings.cache_clear()


def _brain_slices(n: int) -> list[np.ndarray]:
    from PIL import Image

    files = sorted(_br35h_dir().rglob("*.jpg"))[:n]
    out = []
    for f in files:
        a = np.asarray(Image.open(f).convert("L"), dtype=np.float32)
        out.append((a - a.min()) / max(float(a.max() - a.min()), 1e-6))
    return out


def test_a_mask_is_detected_once_per_image_and_is_the_detectors_own(settings):
    calls = []

    def counting(image):
        calls.append(1)
        return head_mask(image)

    memo = HostMemo("roi-head", "test-code", settings)
    images = _brain_slices(3)
    first = [memoized_detector("head", counting, "test-code", memo)(x) for x in images]
    again = [memoized_detector("head", counting, "test-code", HostMemo("roi-head", "test-code", settings))(x)
             for x in images]
    assert len(calls) == 3  # the second pass (a new memo object, as a later round's) detects nothing
    for x, a, b in zip(images, first, again):
        assert np.array_equal(a, head_mask(x)) and np.array_equal(b, a) and b.dtype == bool
    changed = images[0].copy()
    changed[:8, :8] = 1.0
    memoized_detector("head", counting, "test-code", memo)(changed)
    assert len(calls) == 4  # other pixels: another key
    memoized_detector("head", counting, "other-code", HostMemo("roi-head", "other-code", settings))(images[0])
    assert len(calls) == 5  # other code: another folder
    small = images[0][::4, ::4].copy()
    assert small.size < MEMO_MIN_PIXELS <= images[0].size
    for _ in range(2):
        assert np.array_equal(memoized_detector("head", counting, "test-code", memo)(small), head_mask(small))
    assert len(calls) == 7  # a small image is detected each time: its mask is not written


def test_the_memo_lives_outside_every_datasets_part_and_clear_removes_it(settings):
    detect = cached_roi_detector("head")
    detect(_brain_slices(1)[0])
    store = PreprocessStore(settings.resolve_cache_dir(), 1 << 30)
    assert list((store.root / HOST_PART).rglob("*.npz"))
    assert store.summary() == []  # `cache list` shows preprocessing chains only; no sandbox mounts _host
    store.clear()
    assert not (store.root / HOST_PART).exists()


def test_feature_rows_are_remembered_by_content_and_links_are_never_followed(settings, tmp_path, monkeypatch):
    source = sorted(_br35h_dir().rglob("*.jpg"))[:3]
    folder = tmp_path / "data"
    folder.mkdir()
    a, b = folder / "a.jpg", folder / "b.jpg"
    shutil.copyfile(source[0], a)
    shutil.copyfile(source[1], b)
    os.symlink(a, folder / "link.jpg")
    first = acquisition.features_of([a, b, folder / "link.jpg"])
    assert first[:2] == [acquisition.features(a), acquisition.features(b)]
    assert first[2] == {"error": "a link (not followed)"}

    read = []
    real = acquisition.features
    monkeypatch.setattr(acquisition, "features", lambda p: read.append(Path(p).name) or real(p))
    assert acquisition.features_of([a, b]) == first[:2] and read == []  # from the memo
    shutil.copyfile(source[1], a)  # a now holds b's bytes: b's row, by content, with nothing read
    assert acquisition.features_of([a]) == [first[1]] and read == []
    shutil.copyfile(source[2], a)  # new bytes: read again; a link is read (refused) every time
    again = acquisition.features_of([a, folder / "link.jpg"])
    assert read == ["a.jpg", "link.jpg"] and again[0] == real(a) != first[0]


def test_many_feature_rows_are_read_on_worker_processes_and_remembered(settings, monkeypatch):
    from medbuilder.review import per_image

    files = sorted(_br35h_dir().rglob("*.jpg"))[:per_image.MIN_FORKED_ITEMS + 6]
    forked = []
    real_forked = per_image._forked
    monkeypatch.setattr(per_image, "_forked", lambda *args: forked.append(len(args[1])) or real_forked(*args))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # two workers on any machine
    try:
        rows = acquisition.features_of(files)
    finally:
        torch.set_num_threads(threads)
    assert forked == [len(files)]  # every row read on the workers
    assert rows == [acquisition.features(f) for f in files] and not any("error" in r for r in rows)

    def unread(path):
        raise AssertionError(f"{path} read again: the workers' rows were not remembered")

    monkeypatch.setattr(acquisition, "features", unread)
    assert acquisition.features_of(files) == rows


def test_file_digests_are_remembered_by_path_size_mtime_and_inode(tmp_path):
    import hashlib
    import sqlite3

    from medbuilder.cache.digests import DigestMemo

    files = [tmp_path / f"{i}.bin" for i in range(50)]
    for i, file in enumerate(files):
        file.write_bytes(bytes([i]) * 1000)
    memo = DigestMemo(tmp_path / "digests.sqlite")
    assert [memo.digest(f) for f in files] == [hashlib.sha256(f.read_bytes()).hexdigest() for f in files]
    memo.close()  # the 50 rows written in one transaction
    with sqlite3.connect(tmp_path / "digests.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM digests").fetchone()[0] == 50
        db.execute("UPDATE digests SET sha256 = 'remembered' WHERE path = ?", (str(files[0]),))
    memo = DigestMemo(tmp_path / "digests.sqlite")
    assert memo.digest(files[0]) == "remembered"  # read from the table, not from the file
    files[0].write_bytes(b"changed")  # another size and mtime: read again
    assert memo.digest(files[0]) == hashlib.sha256(b"changed").hexdigest()
    memo.close()
