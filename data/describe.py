"""Print the statistics quoted in data/README.md: counts, lengths, linear-probe accuracy.

    python data/describe.py
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from helpers import TASKS, SentenceDataset, SentenceTransformer, load_corpus
from helpers.probe import fit_linear_probe, probe_accuracy


def main() -> None:
    corpus = load_corpus()
    print(f"{len(corpus)} sentences\n")
    print(pd.crosstab([corpus["topic"], corpus["sentiment"]], corpus["split"], margins=True).to_string(), "\n")
    words = corpus["text"].str.split().str.len()
    print("words per sentence:", words.describe(percentiles=[0.1, 0.5, 0.9]).round(1).to_dict(), "\n")
    print(pd.cut(words, [4, 10, 15, 20, 30, 45]).value_counts(sort=False).to_string(), "\n")

    text = corpus["text"]
    cues = {
        "question (?)": text.str.contains(r"\?"),
        "direct quote": text.str.contains('"|“'),
        "headline style (no final punctuation)": ~text.str.contains(r"[.!?\"”)]$"),
        "hashtag or emoji": text.str.contains(r"#\w|[\U0001F300-\U0001FAFF]"),
        "negation (not, n't, never, no)": text.str.contains(r"\b(?:not|never|no)\b|n't", case=False),
        "contrast (despite, although, but, yet)": text.str.contains(r"\b(?:despite|although|though|but|yet)\b",
                                                                    case=False),
    }
    print(pd.DataFrame({"sentences": {name: int(hit.sum()) for name, hit in cues.items()}}).to_string(), "\n")

    embeddings = SentenceTransformer().encode(corpus["text"].tolist(), batch_size=64, normalize_embeddings=True)
    train, test = (corpus["split"] == "train").to_numpy(), (corpus["split"] == "test").to_numpy()
    labels = SentenceDataset(corpus).labels
    for task, names in TASKS.items():
        y = np.array(labels[task])
        probe = fit_linear_probe(embeddings[train], y[train], len(names))
        print(f"linear probe on frozen mean-pooled MiniLM, {task}: test accuracy "
              f"{probe_accuracy(probe, embeddings[test], y[test]):.3f} (chance {1 / len(names):.3f})")
    similarity = embeddings @ embeddings.T
    np.fill_diagonal(similarity, 0.0)
    print(f"highest cosine between two different sentences: {similarity.max():.3f}")


if __name__ == "__main__":
    main()
