"""Which layers to train: recipe x epochs x seconds x test accuracy per portion, against heads only.

    python benchmarks/recipes.py [--recipes "top 1" "top 3" ...] [--epochs 1 2] [--csv FILE]
Each run starts from the pretrained MiniLM with the same fresh heads (seed 0) and trains what its recipe says
(benchmarks/common.py: "top k" trains the top k layers and both heads over the frozen, cached bottom; "full"
trains everything, the embeddings included, with nothing to cache), with AdamW at the rates of common.py,
validates at each epoch's end, keeps the best checkpoint, and is scored on the test split per portion; filling
the cache is part of a run's seconds. The reference row, heads only, is logistic regression fitted to
convergence by L-BFGS on the frozen encoder's embeddings. The gain columns are pooled sentiment accuracy over
both sentiment test portions, minus heads only's on the same sentences, with its paired-bootstrap 95% interval
and McNemar's p. Float32 throughout, as the notebooks' budgets.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from common import STRATEGIES, gain_columns, portion_accuracies, recipe_config

from helpers import load_corpus, pick_device
from helpers.experiments import fresh_model, measure, run_variant
from helpers.metrics import verdicts
from helpers.probe import fit_heads_on_cached_embeddings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    parser.add_argument("--epochs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--csv", type=Path, help="also write the table to this CSV file (notebook 03 shows "
                                                   "benchmarks/results/recipes.csv)")
    args = parser.parse_args()
    device = pick_device(args.device)
    corpus = load_corpus()
    test = corpus[corpus["split"] == "test"]
    print(f"{len(corpus)} sentences ({(corpus['split'] == 'train').sum()} to train on), device {device}, float32")

    heads_only = fresh_model("backbone", device=device)
    with measure() as cost:
        fit_heads_on_cached_embeddings(heads_only, corpus)
    reference = verdicts(heads_only, test, "sentiment")
    rows = {("heads only", "-"): {"strategy": "backbone", **portion_accuracies(heads_only, corpus),
                                  "seconds": cost["seconds"]}}
    for recipe in args.recipes:
        for epochs in args.epochs:
            model = fresh_model(STRATEGIES[recipe], device=device)
            _, row = run_variant(model, corpus, recipe_config(recipe, epochs, device))
            rows[(recipe, epochs)] = {"strategy": STRATEGIES[recipe], **portion_accuracies(model, corpus),
                                      "seconds": row["seconds"], "trained parameters": row["trained parameters"],
                                      **gain_columns(verdicts(model, test, "sentiment"), reference)}
            print(f"{recipe}, {epochs} epoch(s): {row['seconds']:.0f} s", flush=True)
    table = pd.DataFrame(rows).T.rename_axis(["recipe", "epochs"])
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.round(3).to_string())
    if args.csv:
        table.to_csv(args.csv)
    best = table["gain"].astype(float).idxmax()
    print(f"ratio {table.loc[best, 'seconds'] / table.loc[('heads only', '-'), 'seconds']:.2f} "
          f"(seconds of the largest sentiment gain, {best}, over heads only's)")


if __name__ == "__main__":
    main()
