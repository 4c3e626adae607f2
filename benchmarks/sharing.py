"""What sharing the encoder costs sentiment: the multi-task model against a sentiment-only model, same recipe.

    python benchmarks/sharing.py [--recipe "top 3"] [--epochs 1] [--csv FILE]
Both start from the pretrained MiniLM with fresh heads (seed 0) and train by the recipe of benchmarks/common.py
(by default notebook 04's: the top 3 layers over the frozen bottom, cached here): the multi-task model on the whole
corpus, the single-task model on the sentences that carry a sentiment label, with a sentiment head only. Both are
scored on the same test sentences; the last lines compare them paired on sentiment, both sentiment portions
pooled. There is no topic-only model: topic is already in the frozen encoder (heads only, benchmarks/recipes.py).
Notebook 04 shows the table this writes (benchmarks/results/sharing.csv) instead of training the single-task model
live, which would double the notebook's training time. Float32.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from common import CPU_RECIPE, STRATEGIES, gain_columns, portion_accuracies, recipe_config

from helpers import TASKS, load_corpus, pick_device
from helpers.experiments import fresh_model, run_variant
from helpers.metrics import verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default=CPU_RECIPE, choices=list(STRATEGIES))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--csv", type=Path, help="also write the table to this CSV file")
    args = parser.parse_args()
    device = pick_device(args.device)
    corpus = load_corpus()
    test = corpus[corpus["split"] == "test"]
    runs = {"multi-task": (TASKS, corpus),
            "single-task sentiment": ({"sentiment": TASKS["sentiment"]}, corpus[corpus["sentiment"].notna()])}
    rows, right = {}, {}
    for name, (tasks, data) in runs.items():
        model = fresh_model(STRATEGIES[args.recipe], tasks, device=device)
        _, run = run_variant(model, data, recipe_config(args.recipe, args.epochs, device), description=name)
        rows[name] = {**portion_accuracies(model, corpus), "training sentences": int((data["split"] == "train").sum()),
                      "seconds": run["seconds"]}
        right[name] = verdicts(model, test, "sentiment")
        print(f"{name}: {run['seconds']:.0f} s", flush=True)
    gain = gain_columns(right["multi-task"], right["single-task sentiment"])
    rows["multi-task"].update(gain)
    table = pd.DataFrame(rows).T.rename_axis("model")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.round(3).to_string())
    if args.csv:
        table.to_csv(args.csv)
    print(f"ratio {right['multi-task'].mean() / right['single-task sentiment'].mean():.3f} (pooled sentiment accuracy, "
          f"multi-task / single-task; paired difference {gain['gain']:+.3f} [{gain['gain 95% low']:+.3f}, "
          f"{gain['gain 95% high']:+.3f}], McNemar p {gain['McNemar p']:.2g})")


if __name__ == "__main__":
    main()
