"""How training batches are cut from non-aligned data, and what it changes: the batches' task mix, paired scores.

    python benchmarks/batching.py [--seeds 0 1] [--csv FILE]
Three ways to cut notebook 04's training split into batches of 32 (helpers.data.make_loader's ``batching``):
``length`` (the project's: random batches of sentences of similar length, little padding), ``random`` (plain
random batches) and ``portion`` (each batch from one portion, aligned, sentiment only or topic only, in proportion
to its size, as sentence-transformers trains on several datasets: one dataset per batch). For each, the share of
topic and sentiment labels per batch, then notebook 04's recipe (the top 3 layers over the frozen bottom, cached here,
one epoch, rates of benchmarks/common.py) trained once per seed from the same start, scored on the same test
sentences and compared with ``length`` paired, per task, both portions of each task pooled. Float32.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from common import CPU_RECIPE, STRATEGIES, gain_columns, portion_accuracies, recipe_config

from helpers import IGNORE_INDEX, TASKS, load_corpus, make_loader, pick_device
from helpers.data import BATCHING
from helpers.experiments import fresh_model, run_variant
from helpers.metrics import verdicts


def label_shares(train: pd.DataFrame, batching: str, seed: int) -> dict[str, float]:
    """Per task: the mean share of its labels in a batch, and the share of batches where 10% or fewer rows carry it."""
    loader = make_loader(train, str.split, shuffle=True, seed=seed, batching=batching)
    labels = loader.dataset.labels
    figures = {}
    for task in TASKS:
        shares = np.array([np.mean([labels[task][i] != IGNORE_INDEX for i in batch]) for batch in loader.batch_sampler])
        figures[f"{task} labels per batch, mean share"] = shares.mean()
        figures[f"batches with <= 10% {task} labels"] = (shares <= 0.1).mean()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--csv", type=Path, help="also write the table to this CSV file (notebook 04 shows "
                                                   "benchmarks/results/batching.csv)")
    args = parser.parse_args()
    device = pick_device(args.device)
    corpus = load_corpus()
    train, test = corpus[corpus["split"] == "train"], corpus[corpus["split"] == "test"]
    rows, right = {}, {}
    for seed in args.seeds:
        for batching in BATCHING:
            model = fresh_model(STRATEGIES[CPU_RECIPE], device=device, seed=seed)
            _, run = run_variant(model, corpus, recipe_config(CPU_RECIPE, 1, device, seed=seed), description=batching,
                                 batching=batching)
            rows[(batching, seed)] = {**label_shares(train, batching, seed), **portion_accuracies(model, corpus),
                                      "seconds": run["seconds"]}
            right[(batching, seed)] = {task: verdicts(model, test, task) for task in TASKS}
            print(f"{batching}, seed {seed}: {run['seconds']:.0f} s", flush=True)
    for (batching, seed), row in rows.items():
        if batching != "length":
            for task in TASKS:
                gain = gain_columns(right[(batching, seed)][task], right[("length", seed)][task])
                row.update({f"{task}: {name}": value for name, value in gain.items()})
    table = pd.DataFrame(rows).T.rename_axis(["batching", "seed"])
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(table.round(3).to_string())
    if args.csv:
        table.to_csv(args.csv)
    seconds = table["seconds"].astype(float).groupby(level="batching").mean()
    print(f"ratio {seconds['random'] / seconds['length']:.2f} (seconds of random batches over length-grouped ones)")


if __name__ == "__main__":
    main()
