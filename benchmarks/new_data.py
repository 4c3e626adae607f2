"""What the second batch of reviews buys, measured on the test sentences that existed before it.

    python benchmarks/new_data.py [--depth 3] [--epochs 1]
The same recipe (the top ``depth`` layers over a cache of the frozen bottom, as in benchmarks/recipes.py) trains
twice from the same start: on the corpus's first 3,700 rows (before the reviews added in December 2026), and on
the whole corpus. Both, and heads only fitted on each, are scored on the first 3,700 rows' test split: the same
sentences before and after. The last lines compare the two fine-tuned models on those sentences, paired.
"""

from __future__ import annotations

import argparse

import pandas as pd
from common import ENCODER_LR, HEAD_LR, portion_accuracies

from helpers import load_corpus, pick_device
from helpers.experiments import fresh_model, run_variant
from helpers.metrics import verdicts
from helpers.paired import paired_comparison
from helpers.probe import fit_heads_on_cached_embeddings
from helpers.training import TrainConfig

FIRST_BATCH = 3700


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=3, choices=range(1, 7))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = pick_device(args.device)
    corpus = load_corpus()
    old = corpus.iloc[:FIRST_BATCH]
    old_test = old[old["split"] == "test"]
    config = TrainConfig(epochs=args.epochs, lr=ENCODER_LR[args.depth], head_lr=HEAD_LR, seed=0, device=str(device),
                         precision="fp32")
    strategy = f"bottom:{6 - args.depth}" if args.depth < 6 else "embeddings"
    rows, sentiment = {}, {}
    for name, data in (("first 3,700 rows", old), ("all rows", corpus)):
        heads_only = fresh_model("backbone", device=device)
        fit_heads_on_cached_embeddings(heads_only, data)
        rows[("heads only", name)] = portion_accuracies(heads_only, old)
        model = fresh_model(strategy, device=device)
        run_variant(model, data, config)
        rows[(f"top {args.depth}, {args.epochs} epoch(s)", name)] = portion_accuracies(model, old)
        sentiment[name] = verdicts(model, old_test, "sentiment")
        print(f"trained on {name}: {(data['split'] == 'train').sum()} training sentences", flush=True)
    table = pd.DataFrame(rows).T.rename_axis(["model", "trained on"])
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(f"test sentences of the first {FIRST_BATCH} rows, per portion:")
        print(table.round(3).to_string())
    gain = paired_comparison(sentiment["all rows"], sentiment["first 3,700 rows"])
    print(f"sentiment, pooled over the old test sentences ({gain['sentences']}): {gain['difference']:+.3f} "
          f"[{gain['95% low']:+.3f}, {gain['95% high']:+.3f}], McNemar p {gain['McNemar p']:.3g}")
    print(f"ratio {gain['accuracy A'] / gain['accuracy B']:.3f} (sentiment accuracy with the new rows / without)")


if __name__ == "__main__":
    main()
