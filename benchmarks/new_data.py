"""What the third batch of reviews buys, measured on the test sentences that existed before it.

    python benchmarks/new_data.py [--recipe "top 3"] [--epochs 1]
Before the third batch (December 2026) the corpus held the rows that now precede it in data/sentences.csv and the
reviews that moved to data/hard_cases.csv (their split column keeps where each sat). The same recipe (notebook
04's by default: the top 3 layers over a cache of the frozen bottom, benchmarks/common.py) trains twice from the
same start, on that corpus and on today's, and heads only is fitted on each. All four are scored on the same
sentences: the old corpus's test split, per slice (the aligned news; the reviews in plain style and in hard
patterns; the topic-only news). The last lines compare the two fine-tuned models on the old sentiment test
sentences, paired, pooled and per slice. Float32.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from common import CPU_RECIPE, STRATEGIES, gain_columns, recipe_config

from helpers import TASKS, label_portions, load_corpus, pick_device
from helpers.data import HARD_CASES_PATH
from helpers.experiments import fresh_model, run_variant
from helpers.metrics import verdicts
from helpers.probe import fit_heads_on_cached_embeddings

THIRD_BATCH = 4118  # the first row of data/sentences.csv written in the third batch


def slices(test: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The old test sentences by kind: news with both labels, reviews by style, news with a topic only."""
    portion = label_portions(test)
    return {"aligned": test[portion == "aligned"],
            "sentiment only, plain": test[(portion == "sentiment only") & (test["style"] == "plain")],
            "sentiment only, hard": test[(portion == "sentiment only") & (test["style"] == "hard")],
            "topic only": test[portion == "topic only"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default=CPU_RECIPE, choices=list(STRATEGIES))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = pick_device(args.device)
    corpus = load_corpus()
    old = pd.concat([corpus.iloc[:THIRD_BATCH], load_corpus(HARD_CASES_PATH)], ignore_index=True)
    parts = slices(old[old["split"] == "test"])
    rows, right = {}, {}
    for name, data in (("before the third batch", old), ("with it", corpus)):
        heads_only = fresh_model("backbone", device=device)
        fit_heads_on_cached_embeddings(heads_only, data)
        model = fresh_model(STRATEGIES[args.recipe], device=device)
        run_variant(model, data, recipe_config(args.recipe, args.epochs, device))
        for kind, scored in (("heads only", heads_only), (f"{args.recipe}, {args.epochs} epoch(s)", model)):
            verdict = {(task, part): verdicts(scored, frame, task) for part, frame in parts.items() for task in TASKS
                       if frame[task].notna().any()}
            rows[(kind, name)] = {f"{task}, {part}": right.mean() for (task, part), right in verdict.items()}
            right[(kind, name)] = verdict
        print(f"trained on the corpus {name}: {(data['split'] == 'train').sum()} training sentences", flush=True)
    table = pd.DataFrame(rows).T.rename_axis(["model", "trained on"])
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print("accuracy on the test sentences of the corpus before the third batch, per slice:")
        print(table.round(3).to_string())
        print("sentences:", {part: int(frame['sentiment'].notna().sum() or frame['topic'].notna().sum())
                             for part, frame in parts.items()})
    fine_tuned = f"{args.recipe}, {args.epochs} epoch(s)"
    after, before = right[(fine_tuned, "with it")], right[(fine_tuned, "before the third batch")]
    sentiment_parts = [part for part in parts if ("sentiment", part) in after]
    pooled = [np.concatenate([model[("sentiment", part)] for part in sentiment_parts]) for model in (after, before)]
    comparisons = {"sentiment, pooled": gain_columns(*pooled)}
    comparisons.update({f"sentiment, {part}": gain_columns(after[("sentiment", part)], before[("sentiment", part)])
                        for part in sentiment_parts})
    print("with the third batch minus without, the same sentences:")
    print(pd.DataFrame(comparisons).T.round(4).to_string())
    gain = comparisons["sentiment, pooled"]
    print(f"ratio {pooled[0].mean() / pooled[1].mean():.3f} (pooled sentiment accuracy on the old test sentences, "
          f"with the third batch / without; {gain['gain']:+.3f} [{gain['gain 95% low']:+.3f}, "
          f"{gain['gain 95% high']:+.3f}], McNemar p {gain['McNemar p']:.2g})")


if __name__ == "__main__":
    main()
