"""Encoding throughput of helpers.SentenceTransformer against sentence-transformers, same run.

    python benchmarks/encode.py [--random-weights] [--device cuda] [--n 512] [--batch-size 32] [--precision bf16]
Both libraries encode in fp32; helpers also runs under ``--precision`` autocast, and the script prints that
speed-up over fp32. The last line is ``ratio <ours / reference>`` (both fp32).
"""

from __future__ import annotations

import torch
from common import parse_args, reference_model, sentences

from helpers import DEFAULT_MODEL, SentenceTransformer
from helpers.timing import best_throughputs


def main() -> None:
    args = parse_args(__doc__)
    texts = sentences(args.n)
    ours = SentenceTransformer(DEFAULT_MODEL, random_weights=args.random_weights, device=args.device)
    reference = reference_model(ours)
    low = f"helpers {args.precision}"
    runs = {
        "helpers": lambda: ours.encode(texts, batch_size=args.batch_size, normalize_embeddings=True,
                                       precision="fp32"),
        "sentence-transformers": lambda: reference.encode(texts, batch_size=args.batch_size,
                                                          normalize_embeddings=True),
        low: lambda: ours.encode(texts, batch_size=args.batch_size, normalize_embeddings=True,
                                 precision=args.precision),
    }
    speed = best_throughputs(runs, len(texts), args.rounds)
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, {len(texts)} sentences, "
          f"batch {args.batch_size}, weights {'random' if args.random_weights else 'pretrained'}")
    for name, value in speed.items():
        print(f"{name:>22}: {value:8.1f} sentences/s")
    print(f"{args.precision} / fp32 {speed[low] / speed['helpers']:.2f}")
    print(f"ratio {speed['helpers'] / speed['sentence-transformers']:.2f}")


if __name__ == "__main__":
    main()
