"""Training throughput: helpers.train against a minimal plain PyTorch loop on the same batches.

    python benchmarks/train.py [--random-weights] [--device cuda] [--n 128] [--batch-size 32] [--precision bf16]
Both loops run in fp32; helpers.train also runs under ``--precision`` autocast, and the script prints
that speed-up over fp32. It also prints what the per-step finiteness check costs without clipping (with
clipping, the norm it checks is the one clipping computes anyway): helpers.train with the gradient norm
against the same loop with the norm replaced by zero. The last line is ``ratio <helpers / plain loop>``.
"""

from __future__ import annotations

import pandas as pd
import torch
import torch.nn.functional as F
from common import parse_args, sentences

from helpers import DEFAULT_MODEL, TASKS, MultiTaskSentenceTransformer, make_loader, training
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

    def helpers_loop(precision: str, max_grad_norm: float | None = 1.0) -> None:
        train(model, batches, None, TrainConfig(epochs=1, lr=1e-5, device=str(args.device), precision=precision,
                                                max_grad_norm=max_grad_norm))

    def without_norm() -> None:
        real, training.gradient_norm = training.gradient_norm, lambda parameters: torch.zeros(())
        try:
            helpers_loop("fp32", max_grad_norm=None)
        finally:
            training.gradient_norm = real

    low = f"helpers.train {args.precision}"
    runs = {"plain PyTorch loop": plain_loop, "helpers.train": lambda: helpers_loop("fp32"),
            low: lambda: helpers_loop(args.precision),
            "no clipping": lambda: helpers_loop("fp32", max_grad_norm=None), "no clipping, no norm": without_norm}
    speed = best_throughputs(runs, len(texts), args.rounds)
    steps = len(batches)
    check_ms = 1000 * len(texts) / steps * (1 / speed["no clipping"] - 1 / speed["no clipping, no norm"])
    print(f"finiteness check without clipping: {check_ms:.1f} ms per step")
    print(f"device {args.device}, {len(texts)} sentences, batch {args.batch_size}, "
          f"weights {'random' if args.random_weights else 'pretrained'}")
    for name, value in speed.items():
        print(f"{name:>20}: {value:7.1f} sentences/s")
    print(f"{args.precision} / fp32 {speed[low] / speed['helpers.train']:.2f}")
    print(f"ratio {speed['helpers.train'] / speed['plain PyTorch loop']:.2f}")


if __name__ == "__main__":
    main()
