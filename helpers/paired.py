"""Compare two models on the same test sentences: paired, not by whether two intervals overlap.

Explained in notebook 04. Two models scored on the same sentences make correlated errors (the hard sentences
are hard for both), so each accuracy's own interval overstates how uncertain their difference is. The paired
view looks only at the sentences where the two disagree: McNemar's exact test asks whether one wins those more
often than a coin would, and a paired bootstrap (resampling sentences, each keeping both verdicts) gives an
interval for the difference in accuracy.
"""

from __future__ import annotations

import math

import numpy as np


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: ``only_a`` sentences only model A got right, ``only_b`` only B did.

    Under the null hypothesis each disagreement is a fair coin, so the smaller count is Binomial(n, 1/2).
    """
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_comparison(correct_a: np.ndarray, correct_b: np.ndarray, n_resamples: int = 10_000, seed: int = 0
                      ) -> dict[str, float]:
    """A against B on the same sentences (``correct_*``: one bool per sentence, in the same order).

    Returns both accuracies, the difference A - B with its 95% paired-bootstrap interval, the disagreements
    each way and McNemar's exact p-value.
    """
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise ValueError(f"correct_a and correct_b must be two equally long, non-empty 1-D arrays (one verdict per "
                         f"sentence), got shapes {a.shape} and {b.shape}")
    rows = np.random.default_rng(seed).integers(0, len(a), size=(n_resamples, len(a)), dtype=np.int32)
    differences = a[rows].mean(axis=1) - b[rows].mean(axis=1)
    low, high = np.quantile(differences, [0.025, 0.975])
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    return {"accuracy A": float(a.mean()), "accuracy B": float(b.mean()), "difference": float(a.mean() - b.mean()),
            "95% low": float(low), "95% high": float(high), "only A right": only_a, "only B right": only_b,
            "McNemar p": mcnemar_p(only_a, only_b), "sentences": len(a)}
