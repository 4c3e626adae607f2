"""A linear probe: logistic regression on frozen sentence embeddings. Explained in notebook 03.

It measures how much of a task a frozen encoder already knows, and it is the "heads only"
extreme of transfer learning: embeddings are computed once and cached, only the head trains.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def fit_linear_probe(features: np.ndarray, labels: np.ndarray, n_classes: int, weight_decay: float = 1e-3,
                     max_iter: int = 200, seed: int = 0) -> nn.Linear:
    """Fit ``nn.Linear`` with L2-regularised cross-entropy by full-batch L-BFGS (deterministic)."""
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
    return probe


def probe_accuracy(probe: nn.Linear, features: np.ndarray, labels: np.ndarray) -> float:
    with torch.no_grad():
        predicted = probe(torch.tensor(np.asarray(features), dtype=torch.float32)).argmax(dim=1).numpy()
    return float((predicted == np.asarray(labels)).mean())
