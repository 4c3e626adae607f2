"""The exercise's Task 2 design, measured: CLS or mean pooling under the heads, and dropout after pooling.

    python benchmarks/design.py [--seeds 0 1] [--csv FILE]
The exercise feeds its heads BERT's [CLS] vector and adds dropout after pooling; this project pools by the mean
(what all-MiniLM-L6-v2 was trained with) and keeps dropout 0.1. Each design is trained twice: heads only
(logistic regression fitted by L-BFGS on the frozen encoder's vectors, where dropout plays no part) and notebook
04's recipe (the top 3 layers over the cached frozen bottom, one epoch, rates of benchmarks/common.py), from the
same pretrained MiniLM with the same fresh heads, once per seed (the seed draws the heads, the batch order and
the dropout masks). Every design is compared with the project's (mean pooling, dropout 0.1) on the same test
sentences, paired, per task, both portions of each task pooled. Float32.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from common import CPU_RECIPE, STRATEGIES, gain_columns, portion_accuracies, recipe_config

from helpers import TASKS, load_corpus, pick_device
from helpers.experiments import fresh_model, run_variant
from helpers.metrics import verdicts
from helpers.probe import fit_heads_on_cached_embeddings

DESIGNS = {"mean, dropout 0.1": ("mean", 0.1), "cls, dropout 0.1": ("cls", 0.1), "mean, no dropout": ("mean", 0.0),
           "cls, no dropout": ("cls", 0.0)}
PROJECT = "mean, dropout 0.1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--csv", type=Path, help="also write the table to this CSV file (notebook 02 shows "
                                                   "benchmarks/results/design.csv)")
    args = parser.parse_args()
    device = pick_device(args.device)
    corpus = load_corpus()
    test = corpus[corpus["split"] == "test"]
    rows, right, reference = {}, {}, {}
    for pooling in ("mean", "cls"):  # heads only: dropout plays no part in a fit on fixed vectors
        model = fresh_model("backbone", device=device, pooling=pooling)
        fit_heads_on_cached_embeddings(model, corpus)
        key = ("heads only", pooling, "-")
        rows[key] = portion_accuracies(model, corpus)
        right[key] = {task: verdicts(model, test, task) for task in TASKS}
        reference[key] = ("heads only", "mean", "-")
    for seed in args.seeds:
        for design, (pooling, dropout) in DESIGNS.items():
            model = fresh_model(STRATEGIES[CPU_RECIPE], device=device, seed=seed, pooling=pooling, dropout=dropout)
            _, run = run_variant(model, corpus, recipe_config(CPU_RECIPE, 1, device, seed=seed), description=design)
            key = (f"{CPU_RECIPE}, 1 epoch", design, seed)
            rows[key] = {**portion_accuracies(model, corpus), "seconds": run["seconds"]}
            right[key] = {task: verdicts(model, test, task) for task in TASKS}
            reference[key] = (f"{CPU_RECIPE}, 1 epoch", PROJECT, seed)
            print(f"{design}, seed {seed}: {run['seconds']:.0f} s", flush=True)
    for key, row in rows.items():  # each design against the project's, same training and seed, same sentences
        if key != reference[key]:
            for task in TASKS:
                gain = gain_columns(right[key][task], right[reference[key]][task])
                row.update({f"{task}: {name}": value for name, value in gain.items()})
    table = pd.DataFrame(rows).T.rename_axis(["training", "design", "seed"])
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(table.round(3).to_string())
    if args.csv:
        table.to_csv(args.csv)
    cls = table.xs("cls, dropout 0.1", level="design")["sentiment: gain"].astype(float)
    print(f"ratio {cls.mean():+.3f} (mean sentiment gain of CLS pooling over mean pooling, in accuracy)")


if __name__ == "__main__":
    main()
