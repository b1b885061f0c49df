"""medbuilder's store of preprocessed images: each image through each deterministic preprocessing once,
shared by the batch check, training, refinement rounds, evaluation, `predict`, later builds and the bench."""

from medbuilder.cache.offer import MANIFEST, Offer, offer, store_for
from medbuilder.cache.store import PreprocessStore

__all__ = ["MANIFEST", "Offer", "PreprocessStore", "offer", "store_for"]
