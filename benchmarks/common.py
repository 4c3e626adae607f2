"""What the benchmark scripts share: arguments, the sentences, the reference model."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from helpers import SentenceTransformer, pick_device, quiet_transformers, set_seed
from helpers.backbone import bundled_model_path
from helpers.metrics import scores_by_portion
from helpers.paired import paired_comparison
from helpers.training import TrainConfig

CORPUS = Path(__file__).resolve().parents[1] / "data" / "sentences.csv"
# The studies' name for each way of fine-tuning MiniLM, and the freezing strategy behind it (notebook 03's naming
# table): "top k" trains the top k of the 6 layers and the heads over a frozen bottom; "full" trains everything,
# the embeddings included. Heads only (the `backbone` strategy) is fitted by L-BFGS instead (helpers.probe).
STRATEGIES = {"top 1": "bottom:5", "top 2": "bottom:4", "top 3": "bottom:3", "top 6": "embeddings", "full": "none"}
# Deeper fine-tuning takes smaller encoder steps; fresh heads take large ones: they start from random weights and
# must move far within one epoch.
ENCODER_LR = {"top 1": 2e-4, "top 2": 2e-4, "top 3": 2e-4, "top 6": 1e-4, "full": 1e-4}
HEAD_LR = 5e-3
CPU_RECIPE = "top 3"  # one epoch of it: notebook 04's recipe


def recipe_config(recipe: str, epochs: int, device, seed: int = 0) -> TrainConfig:
    """The studies' settings for ``recipe``: its encoder rate, HEAD_LR, batch 32 (run_variant's), float32."""
    return TrainConfig(epochs=epochs, lr=ENCODER_LR[recipe], head_lr=HEAD_LR, seed=seed, device=str(device),
                       precision="fp32")


def gain_columns(correct_a, correct_b) -> dict[str, float]:
    """A minus B on the same sentences (one bool per sentence each): the difference, its paired 95% interval, p."""
    gain = paired_comparison(correct_a, correct_b)
    return {"gain": gain["difference"], "gain 95% low": gain["95% low"], "gain 95% high": gain["95% high"],
            "McNemar p": gain["McNemar p"]}


def parse_args(description: str, **defaults) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--random-weights", action="store_true",
                        help="build the model from its config (no 87 MB weights needed, same speed)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto")
    parser.add_argument("--n", type=int, default=defaults.get("n", 384), help="number of sentences")
    parser.add_argument("--batch-size", type=int, default=defaults.get("batch_size", 32))
    parser.add_argument("--rounds", type=int, default=defaults.get("rounds", 3), help="alternating timed rounds")
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp16"],
                        help="the low precision timed against fp32 (fp16 needs CUDA)")
    args = parser.parse_args()
    args.device = pick_device(args.device)
    set_seed(0)
    return args


def sentences(n: int) -> list[str]:
    """``n`` sentences of mixed length from the project's corpus, cycled if needed."""
    texts = pd.read_csv(CORPUS)["text"].tolist()
    return [texts[i % len(texts)] for i in range(n)]


def reference_model(ours: SentenceTransformer):
    """sentence-transformers loaded from the same files, with exactly our (possibly random) weights."""
    import sentence_transformers

    with quiet_transformers():
        reference = sentence_transformers.SentenceTransformer(str(bundled_model_path()), device=str(ours.device))
    # strict=False: the reference also holds BERT's pooler, which sentence embeddings never use.
    reference[0].auto_model.load_state_dict(ours.backbone.state_dict(), strict=False)
    return reference


def portion_accuracies(model, corpus: pd.DataFrame) -> dict[str, float]:
    """Test accuracy per (task, portion), and each task pooled over its portions."""
    table = scores_by_portion(model, corpus)
    row = {f"{task}, {portion}": value for (task, portion), value in table["accuracy"].items()}
    for task in table.index.unique("task"):
        part = table.loc[task]
        row[f"{task}, pooled"] = (part["accuracy"] * part["sentences"]).sum() / part["sentences"].sum()
    return {name: row[name] for name in sorted(row, key=lambda name: (name.split(",")[0] != "sentiment", name))}
