"""Train one variant of the model end to end and report what it scored and what it cost: the runs that
notebooks 03 and 04 compare.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pandas as pd
import torch
from torch import nn

from .backbone import DEFAULT_MODEL
from .caching import cache_frozen_bottom, worth_caching
from .checks import check_bool
from .data import TASKS, split_loaders
from .freezing import GradualUnfreezing, freeze
from .metrics import evaluate, scores
from .multitask import MultiTaskSentenceTransformer
from .seeding import set_seed
from .training import TrainConfig, train


@contextlib.contextmanager
def measure() -> Iterator[dict]:
    """Wall time of the block, in ``figures["seconds"]`` once it ends."""
    figures: dict = {}
    start = time.perf_counter()
    try:
        yield figures
    finally:
        figures["seconds"] = time.perf_counter() - start


def fresh_model(strategy: str = "none", tasks: dict[str, list[str]] = TASKS, device: str | torch.device | None = None,
                cache: bool = True, share_cache_with: nn.Module | None = None, model_name: str = DEFAULT_MODEL,
                seed: int = 0, pooling: str = "mean", dropout: float = 0.1) -> MultiTaskSentenceTransformer:
    """The pretrained encoder with fresh heads (the same heads for the same ``seed``), frozen by ``strategy``;
    ``pooling`` and ``dropout`` (after pooling) as in ``MultiTaskSentenceTransformer``.

    With ``cache`` and a strategy that freezes the embeddings and at least one layer (``worth_caching``), the frozen
    bottom is cached (see ``helpers.caching``): in a cache of its own, or in ``share_cache_with``'s, a model built
    the same way whose cached bottom is no deeper than this one's frozen bottom (heads only can read a ``bottom:3``
    cache).
    """
    check_bool("cache", cache)
    set_seed(seed)
    model = freeze(MultiTaskSentenceTransformer(tasks, model_name, pooling=pooling, dropout=dropout, device=device),
                   strategy)
    if cache and worth_caching(model):
        shared = getattr(getattr(share_cache_with, "encoder", None), "bottom_cache", None)
        cache_frozen_bottom(model, share_with=share_cache_with, depth=None if shared is None else shared.n_layers)
    return model


def run_variant(model: nn.Module, corpus: pd.DataFrame, config: TrainConfig,
                unfreezing: GradualUnfreezing | None = None, batch_size: int = 32, description: str = "training",
                batching: str = "length") -> tuple[pd.DataFrame, dict[str, float]]:
    """Train ``model`` on the train split (batches cut as ``batching`` says, see ``helpers.data.make_loader``; best
    validation checkpoint kept), score it on the test split.

    Returns the training history and one row: test metrics per task and ``cost_row`` (parameters counted
    at the end, so gradual unfreezing reports everything it unfroze).
    """
    loaders = split_loaders(corpus, model, batch_size, seed=config.seed, batching=batching)
    with measure() as cost:
        history = train(model, loaders["train"], loaders["val"], config, unfreezing=unfreezing,
                        description=description)
    row = scores(evaluate(model, loaders["test"], precision=config.precision))
    row.update(cost_row(model, cost["seconds"]))
    return history, row


def cost_row(model: nn.Module, seconds: float) -> dict[str, float]:
    """What a run cost: seconds, parameters trained, and the memory those parameters need for gradients and
    AdamW's two moment estimates (3 x 4 bytes each: computed, not measured)."""
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"seconds": seconds, "trained parameters": trained, "grad + AdamW MB": 12 * trained / 2**20}
