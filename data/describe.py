"""Print the statistics quoted in data/README.md: counts, lengths, cues, linear-probe accuracy.

    python data/describe.py
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import torch

from helpers import TASKS, SentenceDataset, SentenceTransformer, label_portions, load_corpus
from helpers.probe import fit_linear_probe

FIRST_BATCH = 3700  # rows written in November 2026; the rows after them are the reviews added in December


def main() -> None:
    corpus = load_corpus()
    portion = label_portions(corpus)
    print(f"{len(corpus)} sentences\n")
    added = corpus.iloc[FIRST_BATCH:]
    print(f"second batch (rows after {FIRST_BATCH}): {len(added)} sentences")
    print(pd.crosstab(added["sentiment"], added["split"], margins=True).to_string(), "\n")
    print(pd.crosstab(portion, corpus["split"], margins=True).to_string(), "\n")
    cells = [portion, corpus["topic"].fillna("-"), corpus["sentiment"].fillna("-")]
    print(pd.crosstab(cells, corpus["split"], margins=True).to_string(), "\n")
    words = corpus["text"].str.split().str.len()
    for name, rows in words.groupby(portion):
        print(f"words per sentence, {name}:", rows.describe(percentiles=[0.1, 0.5, 0.9]).round(1).to_dict())
    print()

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
    print(pd.DataFrame({name: hit.groupby(portion).sum() for name, hit in cues.items()}).T.to_string(), "\n")

    embeddings = SentenceTransformer().encode(corpus["text"].tolist(), batch_size=64, normalize_embeddings=True)
    train, test = (corpus["split"] == "train").to_numpy(), (corpus["split"] == "test").to_numpy()
    labels = SentenceDataset(corpus).labels
    for task, names in TASKS.items():
        y = np.array(labels[task])
        known = y >= 0
        probe = fit_linear_probe(embeddings[train & known], y[train & known], len(names))
        for name in sorted(set(portion[known])):
            rows = test & known & (portion == name).to_numpy()
            with torch.no_grad():
                accuracy = (probe(torch.from_numpy(embeddings[rows])).argmax(dim=1).numpy() == y[rows]).mean()
            print(f"linear probe on frozen mean-pooled MiniLM, {task}, {name} test: accuracy "
                  f"{accuracy:.3f} (chance {1 / len(names):.3f})")
    similarity = embeddings @ embeddings.T
    np.fill_diagonal(similarity, 0.0)
    print(f"highest cosine between two different sentences: {similarity.max():.3f}")
    print(f"highest cosine between a validation or test sentence and a training sentence: "
          f"{similarity[~train][:, train].max():.3f}")


if __name__ == "__main__":
    main()
