"""Fair speed comparisons on a shared, noisy machine: warm up, alternate, keep each contender's best.

Explained in notebook 02, which times one shared model against two; the benchmarks use it too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from time import perf_counter

import torch


def _synchronize() -> None:
    """Wait for queued GPU work, so a timer measures the work and not just its launch."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def best_throughputs(runs: Mapping[str, Callable[[], object]], n_items: int, rounds: int = 3) -> dict[str, float]:
    """Items/s per contender: one warm-up each, then ``rounds`` alternating runs, best kept.

    The warm-up pays one-off costs (thread pools, allocator, caches); alternating spreads any slow phase
    of the machine over all contenders; the best round is the one least disturbed by other processes.
    """
    for run in runs.values():
        run()
    best = dict.fromkeys(runs, 0.0)
    for _ in range(rounds):
        for name, run in runs.items():
            _synchronize()
            start = perf_counter()
            run()
            _synchronize()
            best[name] = max(best[name], n_items / (perf_counter() - start))
    return best
