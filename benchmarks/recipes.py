"""Which layers to train: depth x epochs x seconds x test accuracy per portion, against heads only.

    python benchmarks/recipes.py [--depths 1 2 3 6] [--epochs 1 2] [--rows N] [--csv FILE]
Each run starts from the pretrained MiniLM with the same fresh heads (seed 0) and trains the top ``depth``
layers and both heads (embeddings and lower layers frozen, their output cached; filling the cache is part of
the run's seconds) with AdamW at the rates of benchmarks/common.py, validates at each epoch's end, keeps the
best checkpoint, and is scored on the test split per portion. The reference row, heads only, is logistic
regression fitted to convergence by L-BFGS on the frozen encoder's embeddings. The gain column is pooled
sentiment accuracy over both sentiment test portions, minus heads only's on the same sentences, with its
paired-bootstrap 95% interval and McNemar's p.
``--rows N`` keeps only the corpus's first N rows (3,700: the corpus before its second batch of reviews).
Float32 throughout, as the notebooks' budgets; about 10 minutes on a 2-core CPU for the defaults.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from common import ENCODER_LR, HEAD_LR, depth_strategy, portion_accuracies

from helpers import load_corpus, pick_device
from helpers.experiments import fresh_model, measure, run_variant
from helpers.metrics import verdicts
from helpers.paired import paired_comparison
from helpers.probe import fit_heads_on_cached_embeddings
from helpers.training import TrainConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depths", type=int, nargs="+", default=[1, 2, 3, 6], choices=range(1, 7))
    parser.add_argument("--epochs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rows", type=int, help="use only the corpus's first ROWS rows")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--csv", type=Path, help="also write the table to this CSV file (notebook 03 shows "
                                                   "benchmarks/results/recipes.csv)")
    args = parser.parse_args()
    device = pick_device(args.device)
    corpus = load_corpus()
    corpus = corpus.iloc[:args.rows] if args.rows else corpus
    test = corpus[corpus["split"] == "test"]
    print(f"{len(corpus)} sentences ({(corpus['split'] == 'train').sum()} to train on), device {device}, float32")

    heads_only = fresh_model("backbone", device=device)
    with measure() as cost:
        fit_heads_on_cached_embeddings(heads_only, corpus)
    reference = verdicts(heads_only, test, "sentiment")
    rows = {("heads only", "-"): {**portion_accuracies(heads_only, corpus), "seconds": cost["seconds"]}}
    for depth in args.depths:
        for epochs in args.epochs:
            model = fresh_model(depth_strategy(depth), device=device)
            config = TrainConfig(epochs=epochs, lr=ENCODER_LR[depth], head_lr=HEAD_LR, seed=0, device=str(device),
                                 precision="fp32")
            _, row = run_variant(model, corpus, config)
            gain = paired_comparison(verdicts(model, test, "sentiment"), reference)
            rows[(f"top {depth}", epochs)] = {**portion_accuracies(model, corpus), "seconds": row["seconds"],
                                              "gain": gain["difference"], "gain 95% low": gain["95% low"],
                                              "gain 95% high": gain["95% high"], "McNemar p": gain["McNemar p"]}
            print(f"top {depth}, {epochs} epoch(s): {row['seconds']:.0f} s", flush=True)
    table = pd.DataFrame(rows).T.rename_axis(["layers trained", "epochs"])
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.round(3).to_string())
    if args.csv:
        table.to_csv(args.csv)
    best = table["gain"].astype(float).idxmax()
    print(f"ratio {table.loc[best, 'seconds'] / table.loc[('heads only', '-'), 'seconds']:.2f} "
          f"(seconds of the largest sentiment gain, {best}, over heads only's)")


if __name__ == "__main__":
    main()
