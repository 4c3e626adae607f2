"""Sentence embeddings and multi-task learning with transformers: the code the notebooks share.

Each module does one job, named in its docstring with the notebook that explains it (where one does);
the README's module table lists them. ``python -m helpers train`` and ``python -m helpers predict`` are
the commands (see helpers.cli).
"""

from .backbone import DEFAULT_MODEL, load_backbone, quiet_transformers, resolve_model_path
from .data import IGNORE_INDEX, SPLITS, TASKS, SentenceDataset, label_maps, label_portions, load_corpus, make_loader
from .devices import pick_device
from .embedder import SentenceTransformer
from .freezing import GradualUnfreezing, freeze
from .losses import task_losses
from .metrics import evaluate
from .multitask import MultiTaskSentenceTransformer
from .parameters import parameter_table
from .pooling import POOLING_MODES, pool
from .seeding import set_seed
from .training import TrainConfig, train

__all__ = [
    "DEFAULT_MODEL",
    "IGNORE_INDEX",
    "POOLING_MODES",
    "SPLITS",
    "TASKS",
    "GradualUnfreezing",
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
    "task_losses",
    "train",
]
