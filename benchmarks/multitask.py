"""Predicting both tasks: one shared MultiTaskSentenceTransformer vs two single-task models.

    python benchmarks/multitask.py [--random-weights] [--device cuda] [--n 384] [--batch-size 32]
Prints throughput and parameter counts; the last line is ``ratio <shared / two models throughput>``.
"""

from __future__ import annotations

from common import parse_args, sentences

from helpers import DEFAULT_MODEL, TASKS, MultiTaskSentenceTransformer
from helpers.timing import best_throughputs


def main() -> None:
    args = parse_args(__doc__)
    texts = sentences(args.n)

    def build(tasks):
        return MultiTaskSentenceTransformer(tasks, DEFAULT_MODEL, random_weights=args.random_weights,
                                            device=args.device)

    shared = build(TASKS)
    separate = [build({task: labels}) for task, labels in TASKS.items()]
    runs = {"shared": lambda: shared.predict(texts, batch_size=args.batch_size),
            "two models": lambda: [m.predict(texts, batch_size=args.batch_size) for m in separate]}
    speed = best_throughputs(runs, len(texts), args.rounds)
    parameters = {"shared": sum(p.numel() for p in shared.parameters()),
                  "two models": sum(p.numel() for m in separate for p in m.parameters())}
    print(f"device {args.device}, {len(texts)} sentences, batch {args.batch_size}")
    for name in runs:
        print(f"{name:>10}: {speed[name]:8.1f} sentences/s, {parameters[name]:,} parameters")
    print(f"parameter ratio {parameters['shared'] / parameters['two models']:.3f}")
    print(f"ratio {speed['shared'] / speed['two models']:.2f}")


if __name__ == "__main__":
    main()
