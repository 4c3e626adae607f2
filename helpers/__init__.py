"""Sentence embeddings and multi-task learning with transformers: the code the notebooks share."""

from .backbone import DEFAULT_MODEL, load_backbone, quiet_transformers, resolve_model_path
from .embedder import SentenceTransformer
from .pooling import POOLING_MODES, pool
from .utils import pick_device, set_seed

__all__ = [
    "DEFAULT_MODEL",
    "POOLING_MODES",
    "SentenceTransformer",
    "load_backbone",
    "pick_device",
    "pool",
    "quiet_transformers",
    "resolve_model_path",
    "set_seed",
]
