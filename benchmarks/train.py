"""Training throughput: helpers.train against a minimal plain PyTorch loop on the same batches.

    python benchmarks/train.py [--random-weights] [--device cuda] [--n 128] [--batch-size 32] [--precision bf16]
Both loops run in fp32; helpers.train also runs under ``--precision`` autocast, and the script prints
that speed-up over fp32. The last line is ``ratio <helpers / plain loop>`` (both fp32).
"""

from __future__ import annotations

import pandas as pd
import torch
import torch.nn.functional as F
from common import parse_args, sentences

from helpers import DEFAULT_MODEL, TASKS, MultiTaskSentenceTransformer, make_loader
from helpers.timing import best_throughputs
from helpers.training import TrainConfig, train


def main() -> None:
    args = parse_args(__doc__, n=128)
    texts = sentences(args.n)
    labels = {task: [names[i % len(names)] for i in range(len(texts))] for task, names in TASKS.items()}
    frame = pd.DataFrame({"text": texts, "split": "train", **labels})
    model = MultiTaskSentenceTransformer(TASKS, DEFAULT_MODEL, random_weights=args.random_weights,
                                         device=args.device)
    loader = make_loader(frame, model.tokenize, batch_size=args.batch_size, shuffle=True)
    batches = list(loader)  # the same batches for every contender

    def plain_loop() -> None:
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
        model.train()
        for batch in batches:
            logits = model(batch["input_ids"].to(args.device), batch["attention_mask"].to(args.device))
            loss = sum(F.cross_entropy(logits[t], batch["labels"][t].to(args.device)) for t in TASKS)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    def helpers_loop(precision: str) -> None:
        train(model, batches, None, TrainConfig(epochs=1, lr=1e-5, device=str(args.device), precision=precision))

    low = f"helpers.train {args.precision}"
    runs = {"plain PyTorch loop": plain_loop, "helpers.train": lambda: helpers_loop("fp32"),
            low: lambda: helpers_loop(args.precision)}
    speed = best_throughputs(runs, len(texts), args.rounds)
    print(f"device {args.device}, {len(texts)} sentences, batch {args.batch_size}, "
          f"weights {'random' if args.random_weights else 'pretrained'}")
    for name, value in speed.items():
        print(f"{name:>20}: {value:7.1f} sentences/s")
    print(f"{args.precision} / fp32 {speed[low] / speed['helpers.train']:.2f}")
    print(f"ratio {speed['helpers.train'] / speed['plain PyTorch loop']:.2f}")


if __name__ == "__main__":
    main()
