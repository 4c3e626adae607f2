"""What a training step costs on MiniLM and on the exercise's bert-base-uncased: seconds and peak memory.

    python benchmarks/backbones.py [--batches 4] [--rounds 3] [--csv FILE]
A step's time and memory depend on the architecture and the batch, not on the weights' values, so both models
are built from their configs with random weights (bert-base-uncased is not on this machine; its config is
transformers' BertConfig() defaults, and it shares MiniLM's uncased 30,522-word-piece tokenizer). Each model runs
in a process of its own, so its peak resident memory is its own: full fine-tuning (nothing frozen, AdamW, batch
32 of the corpus's training sentences, float32), one warm-up pass over the batches, then the best of ``--rounds``
timed passes. Notebook 03 shows the table (benchmarks/results/backbones.csv).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import torch
from transformers import AutoTokenizer, BertConfig

from helpers import DEFAULT_MODEL, TASKS, MultiTaskSentenceTransformer, load_corpus, make_loader, set_seed
from helpers.backbone import bundled_model_path, quiet_transformers
from helpers.timing import best_throughputs
from helpers.training import TrainConfig, train

MODELS = ("all-MiniLM-L6-v2", "bert-base-uncased")


def peak_gb() -> float:
    """This process's peak resident memory so far (ru_maxrss: kilobytes on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**30 if sys.platform == "darwin" else 2**20)


def build(name: str, folder: Path) -> MultiTaskSentenceTransformer:
    """``name`` with random weights; bert-base from BertConfig() and MiniLM's tokenizer, written to ``folder``."""
    if name == "bert-base-uncased":
        with quiet_transformers():
            BertConfig().save_pretrained(folder)
            AutoTokenizer.from_pretrained(bundled_model_path()).save_pretrained(folder)
        return MultiTaskSentenceTransformer(TASKS, folder, random_weights=True)
    return MultiTaskSentenceTransformer(TASKS, DEFAULT_MODEL, random_weights=True)


def measure_one(name: str, n_batches: int, rounds: int) -> dict[str, float]:
    set_seed(0)
    torch.set_num_threads(torch.get_num_threads())
    with tempfile.TemporaryDirectory() as folder:
        model = build(name, Path(folder))
    built = peak_gb()
    train_rows = load_corpus().query("split == 'train'")
    batches = list(make_loader(train_rows, model.tokenize, shuffle=True, seed=0))[:n_batches]
    config = TrainConfig(epochs=1, lr=1e-5, head_lr=1e-3, device="cpu", precision="fp32", warmup_ratio=0.0)
    sentences = sum(len(batch["input_ids"]) for batch in batches)
    speed = best_throughputs({name: lambda: train(model, batches, None, config)}, sentences, rounds)[name]
    return {"parameters": sum(p.numel() for p in model.parameters()), "seconds per step": 32 / speed,
            "training sentences/s": speed, "memory after loading (GB)": built, "peak memory, training (GB)": peak_gb(),
            "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--one", choices=MODELS, help=argparse.SUPPRESS)  # the child process's job
    parser.add_argument("--csv", type=Path, help="also write the table to this CSV file")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(args.one, args.batches, args.rounds)))
        return
    rows = {}
    for name in MODELS:
        child = subprocess.run([sys.executable, __file__, "--one", name, "--batches", str(args.batches),
                                "--rounds", str(args.rounds)], capture_output=True, text=True, check=True)
        rows[name] = json.loads(child.stdout.splitlines()[-1])
        print(f"{name}: {rows[name]['seconds per step']:.2f} s per step, "
              f"peak {rows[name]['peak memory, training (GB)']:.2f} GB", flush=True)
    table = pd.DataFrame(rows).T.rename_axis("model")
    table["step time, x MiniLM"] = table["seconds per step"] / table.loc[MODELS[0], "seconds per step"]
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.round(3).to_string())
    if args.csv:
        table.to_csv(args.csv)
    print(f"ratio {table.loc[MODELS[1], 'step time, x MiniLM']:.2f} (bert-base's seconds per training step over "
          "MiniLM's, full fine-tuning, batch 32)")


if __name__ == "__main__":
    main()
