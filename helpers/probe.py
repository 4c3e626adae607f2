"""A linear probe: logistic regression on frozen sentence embeddings. Explained in notebooks 03 and 04.

It measures how much of a task a frozen encoder already knows, and it is the "heads only"
extreme of transfer learning: embeddings are computed once and cached, only the head trains.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import torch
from torch import nn

from .data import SentenceDataset

CONVERGED = 1e-4  # largest gradient entry of the objective at which a fit counts as converged


def fit_linear_probe(features: np.ndarray, labels: np.ndarray, n_classes: int, weight_decay: float = 1e-3,
                     max_iter: int = 500, seed: int = 0) -> nn.Linear:
    """Fit ``nn.Linear`` with L2-regularised cross-entropy by full-batch L-BFGS (deterministic), to convergence.

    The objective is convex, so L-BFGS reaches its minimum: on MiniLM's 384-d vectors of this corpus within
    500 iterations (L-BFGS stops early once converged). A fit that stops short of ``CONVERGED`` warns.
    """
    torch.manual_seed(seed)
    x = torch.tensor(np.asarray(features), dtype=torch.float32)  # a copy: the inputs may be read-only views
    y = torch.tensor(np.asarray(labels), dtype=torch.long)
    probe = nn.Linear(x.shape[1], n_classes)
    optimizer = torch.optim.LBFGS(probe.parameters(), max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(probe(x), y) + weight_decay * probe.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    closure()  # the gradient at the weights returned
    largest = max(parameter.grad.abs().max().item() for parameter in probe.parameters())
    if largest > CONVERGED:
        warnings.warn(f"the linear probe did not converge in {max_iter} L-BFGS iterations (largest gradient entry "
                      f"{largest:.1e}); raise max_iter", RuntimeWarning, stacklevel=2)
    return probe


def fit_heads_on_cached_embeddings(model: nn.Module, corpus: pd.DataFrame, batch_size: int = 64,
                                   features: np.ndarray | None = None) -> None:
    """Heads-only training without re-running the frozen encoder every epoch.

    With the backbone frozen, its output for a sentence never changes, so each training sentence is
    encoded once and every linear head is fitted on those cached vectors (L2-regularised logistic
    regression, the linear probe, to convergence). Requires linear heads (``hidden_dim=None``).
    ``features``: the frozen encoder's vectors of the training rows, in their order, if already computed.
    """
    train_rows = corpus[corpus["split"] == "train"]
    if features is None:
        features = model.encoder.encode(train_rows["text"].tolist(), batch_size=batch_size)
    elif len(features) != len(train_rows):
        raise ValueError(f"features has {len(features)} rows but the corpus {len(train_rows)} training rows; pass "
                         "the encoder's vectors of exactly the training rows, in their order")
    labels = SentenceDataset(train_rows, model.tasks).labels
    for task, head in model.heads.items():
        if not isinstance(head, nn.Linear):
            raise ValueError(f"head {task!r} is not linear; cached-embedding training needs hidden_dim=None")
        y = pd.Series(labels[task])
        known = (y >= 0).to_numpy()
        probe = fit_linear_probe(features[known], y[known].to_numpy(), head.out_features)
        head.load_state_dict(probe.state_dict())
