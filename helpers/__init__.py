"""Sentence embeddings and multi-task learning with transformers: the code the notebooks share.

Each module's docstring names the notebook that explains it.
"""

from .backbone import DEFAULT_MODEL, load_backbone, quiet_transformers, resolve_model_path
from .data import IGNORE_INDEX, SPLITS, TASKS, SentenceDataset, label_maps, label_portions, load_corpus, make_loader
from .embedder import SentenceTransformer
from .freezing import freeze
from .multitask import MultiTaskSentenceTransformer
from .parameters import parameter_table
from .pooling import POOLING_MODES, pool
from .training import TrainConfig, evaluate, train
from .utils import pick_device, set_seed

__all__ = [
    "DEFAULT_MODEL",
    "IGNORE_INDEX",
    "POOLING_MODES",
    "SPLITS",
    "TASKS",
    "MultiTaskSentenceTransformer",
    "SentenceDataset",
    "SentenceTransformer",
    "TrainConfig",
    "evaluate",
    "freeze",
    "label_maps",
    "label_portions",
    "load_backbone",
    "load_corpus",
    "make_loader",
    "parameter_table",
    "pick_device",
    "pool",
    "quiet_transformers",
    "resolve_model_path",
    "set_seed",
    "train",
]
