"""What the benchmark scripts share: arguments, the sentences, the reference model."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from helpers import SentenceTransformer, pick_device, quiet_transformers, set_seed
from helpers.backbone import bundled_model_path
from helpers.metrics import scores_by_portion

CORPUS = Path(__file__).resolve().parents[1] / "data" / "sentences.csv"
# The recipe per number of layers trained: deeper fine-tuning, smaller encoder steps; fresh heads take large ones
# (at 2e-3 they are still underfitted after one epoch, which hides what the encoder learned).
ENCODER_LR = {1: 2e-4, 2: 2e-4, 3: 2e-4, 4: 1e-4, 5: 1e-4, 6: 1e-4}
HEAD_LR = 5e-3


def depth_strategy(depth: int) -> str:
    """The freezing strategy that trains the top ``depth`` of MiniLM's 6 layers (all 6: only the embeddings frozen)."""
    return f"bottom:{6 - depth}" if depth < 6 else "embeddings"


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
    """Test accuracy per (task, portion), and sentiment pooled over its portions."""
    table = scores_by_portion(model, corpus)
    row = {f"{task}, {portion}": value for (task, portion), value in table["accuracy"].items()}
    sentiment = table.loc["sentiment"]
    row["sentiment, pooled"] = (sentiment["accuracy"] * sentiment["sentences"]).sum() / sentiment["sentences"].sum()
    return {name: row[name] for name in sorted(row, key=lambda name: (name.split(",")[0] != "sentiment", name))}
