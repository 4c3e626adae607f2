"""What sharing the encoder costs sentiment: the multi-task model against a sentiment-only model, same recipe.

    python benchmarks/sharing.py [--depth 3] [--epochs 1] [--csv FILE]
Both start from the pretrained MiniLM with fresh heads (seed 0) and train the top ``depth`` layers over a cache of
the frozen bottom at the rates of benchmarks/common.py: the multi-task model on the whole corpus, the single-task
model on the sentences that carry a sentiment label, with a sentiment head only. Both are scored on the same test
sentences; the last lines compare them paired on sentiment, both sentiment portions pooled. There is no topic-only
model: topic is already in the frozen encoder (heads only: 0.95-0.96, benchmarks/recipes.py). Notebook 04 shows
the table this writes (benchmarks/results/sharing.csv) instead of training the single-task model live, which
would double the notebook's training time. Float32; about 5 minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from common import ENCODER_LR, HEAD_LR, depth_strategy, portion_accuracies

from helpers import TASKS, load_corpus, pick_device
from helpers.experiments import fresh_model, run_variant
from helpers.metrics import verdicts
from helpers.paired import paired_comparison
from helpers.training import TrainConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=3, choices=range(1, 7))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--csv", type=Path, help="also write the table to this CSV file")
    args = parser.parse_args()
    device = pick_device(args.device)
    corpus = load_corpus()
    test = corpus[corpus["split"] == "test"]
    config = TrainConfig(epochs=args.epochs, lr=ENCODER_LR[args.depth], head_lr=HEAD_LR, seed=0, device=str(device),
                         precision="fp32")
    runs = {"multi-task": (TASKS, corpus),
            "single-task sentiment": ({"sentiment": TASKS["sentiment"]}, corpus[corpus["sentiment"].notna()])}
    rows, right = {}, {}
    for name, (tasks, data) in runs.items():
        model = fresh_model(depth_strategy(args.depth), tasks, device=device)
        _, run = run_variant(model, data, config, description=name)
        rows[name] = {**portion_accuracies(model, corpus), "training sentences": int((data["split"] == "train").sum()),
                      "seconds": run["seconds"]}
        right[name] = verdicts(model, test, "sentiment")
        print(f"{name}: {run['seconds']:.0f} s", flush=True)
    gain = paired_comparison(right["multi-task"], right["single-task sentiment"])
    rows["multi-task"].update({"difference": gain["difference"], "95% low": gain["95% low"],
                               "95% high": gain["95% high"], "McNemar p": gain["McNemar p"]})
    table = pd.DataFrame(rows).T.rename_axis("model")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.round(3).to_string())
    if args.csv:
        table.to_csv(args.csv)
    print(f"ratio {gain['accuracy A'] / gain['accuracy B']:.3f} (pooled sentiment accuracy, multi-task / single-task; "
          f"paired difference {gain['difference']:+.3f} [{gain['95% low']:+.3f}, {gain['95% high']:+.3f}], "
          f"McNemar p {gain['McNemar p']:.2g})")


if __name__ == "__main__":
    main()
