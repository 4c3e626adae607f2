"""Print the statistics quoted in data/README.md: counts, lengths, cues, word polarity, style, transfer, probes.

    python data/describe.py
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from helpers import TASKS, SentenceDataset, SentenceTransformer, label_portions, load_corpus
from helpers.probe import fit_linear_probe

HERE = Path(__file__).resolve().parent
# Row ranges of sentences.csv: the aligned rows, then each batch's non-aligned rows, in the order they were written.
BATCHES = {"aligned (November)": (0, 1800), "first batch (November)": (1800, 3212),
           "second batch (December)": (3212, 4118), "third batch (December)": (4118, None)}
POLARITY_WORDS = ["great", "love", "best", "brilliant", "excellent", "bad", "worst", "boring", "awful", "dull",
                  "terrible", "disappointing"]


def load() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The corpus with its style column and each row's batch, and the hard cases (their former split kept)."""
    corpus = load_corpus().assign(batch="")
    for name, (start, end) in BATCHES.items():
        corpus.iloc[start:end, corpus.columns.get_loc("batch")] = name
    hard = load_corpus(HERE / "hard_cases.csv").assign(batch="hard cases")
    return corpus, hard


def cues(text: pd.Series) -> dict[str, pd.Series]:
    return {
        "question (?)": text.str.contains(r"\?"),
        "exclamation (!)": text.str.contains("!"),
        "direct quote": text.str.contains('"|“'),
        "dash, bracket or ellipsis": text.str.contains(r" [-–—] |\(|\.\.\.|…"),
        "rating (7/10, 4 stars)": text.str.contains(r"\b\d+(?:\.\d)?/(?:10|5)\b|\bstars?\b|★", case=False),
        "headline style (no final punctuation)": ~text.str.contains(r"[.!?\"”)]$"),
        "hashtag or emoji": text.str.contains(r"#\w|[\U0001F300-\U0001FAFF]"),
        "negation (not, n't, never, no)": text.str.contains(r"\b(?:not|never|no)\b|n't", case=False),
        "'not bad'": text.str.contains(r"\bnot (?:half |that |too )?bad\b", case=False),
        "contrast (despite, although, but, yet)": text.str.contains(r"\b(?:despite|although|though|but|yet)\b",
                                                                    case=False),
        "first person (I, my, we)": text.str.contains(r"\b(?:I|my|me|we|our)\b"),
    }


def polarity(frame: pd.DataFrame) -> pd.DataFrame:
    """For each plain sentiment word: the sentiment rows that contain it, and the share of them that are positive."""
    rows = frame[frame["sentiment"].notna()]
    table = {}
    for word in POLARITY_WORDS:
        hit = rows["text"].str.contains(rf"\b{word}\b", case=False)
        table[word] = {"rows": int(hit.sum()), "share positive": (rows.loc[hit, "sentiment"] == "positive").mean()}
    return pd.DataFrame(table).T


def bag_of_words(train: pd.DataFrame, task: str, tests: dict[str, pd.DataFrame]) -> dict[str, float]:
    """Logistic regression on which words a sentence contains (words seen twice in training), scored on each test."""
    def words(text: str) -> set[str]:
        return set(re.findall(r"[a-z']+", text.lower()))

    counts = pd.Series([word for text in train["text"] for word in words(text)]).value_counts()
    vocabulary = {word: i for i, word in enumerate(counts[counts >= 2].index)}

    def features(frame: pd.DataFrame) -> np.ndarray:
        x = np.zeros((len(frame), len(vocabulary)), dtype=np.float32)
        for row, text in enumerate(frame["text"]):
            x[row, [vocabulary[word] for word in words(text) if word in vocabulary]] = 1.0
        return x

    labels = {label: i for i, label in enumerate(TASKS[task])}
    probe = fit_linear_probe(features(train), train[task].map(labels).to_numpy(), len(labels), weight_decay=1e-2,
                             max_iter=500)
    with torch.no_grad():
        return {name: float((probe(torch.from_numpy(features(test))).argmax(dim=1).numpy()
                             == test[task].map(labels).to_numpy()).mean()) for name, test in tests.items()}


def matched(training_sets: dict[str, pd.DataFrame], task: str, tests: dict[str, pd.DataFrame], draws: int = 3
            ) -> pd.DataFrame:
    """``bag_of_words`` per training set, each cut to the smallest one's size (a mean over ``draws`` samples), so
    that a column compares kinds of text, not amounts of it."""
    size = min(len(rows) for rows in training_sets.values())
    table = {name: pd.DataFrame([bag_of_words(rows.sample(size, random_state=draw), task, tests)
                                 for draw in range(draws)]).mean() for name, rows in training_sets.items()}
    print(f"{task}, bag of words, {size} training rows each: accuracy by training set (rows) and test set (columns)")
    print(pd.DataFrame(table).T.round(3).to_string(), "\n")


def transfer(corpus: pd.DataFrame, hard: pd.DataFrame) -> None:
    """Bag-of-words models trained on one kind of text and tested on every kind: a style cue shows as a gap."""
    sentiment = corpus[corpus["sentiment"].notna()]
    train = sentiment[sentiment["split"] == "train"]
    test = sentiment[sentiment["split"] == "test"]
    groups = {name: rows for name, rows in test.groupby("batch", sort=False)}
    groups.update({"plain style": test[test["style"] == "plain"], "hard style": test[test["style"] == "hard"],
                   "hard cases": hard})
    training_sets = {name: rows for name, rows in train.groupby("batch", sort=False)}
    training_sets.update({"plain style": train[train["style"] == "plain"],
                          "hard style": train[train["style"] == "hard"]})
    matched(training_sets, "sentiment", groups)
    table = {name: bag_of_words(rows, "sentiment", groups) for name, rows in {"all": train}.items()}
    print("sentiment, bag of words, every training row:", pd.Series(table["all"]).round(3).to_dict(), "\n")
    topic = corpus[corpus["topic"].notna()]
    portions = label_portions(topic)
    test_sets = {name: topic[(topic["split"] == "test") & (portions == name)] for name in ("aligned", "topic only")}
    matched({name: topic[(topic["split"] == "train") & (portions == name)] for name in ("aligned", "topic only")},
            "topic", test_sets)


def main() -> None:
    corpus, hard = load()
    portion = label_portions(corpus)
    print(f"{len(corpus)} sentences in sentences.csv, {len(hard)} in hard_cases.csv\n")
    print(pd.crosstab(portion, corpus["split"], margins=True).to_string(), "\n")
    cells = [portion, corpus["topic"].fillna("-"), corpus["sentiment"].fillna("-")]
    print(pd.crosstab(cells, corpus["split"], margins=True).to_string(), "\n")
    print("sentiment rows per batch and style:")
    print(pd.crosstab(corpus["batch"], corpus["style"].fillna("-"), margins=True).to_string(), "\n")
    third = corpus[corpus["batch"] == "third batch (December)"]
    print(pd.crosstab(third["sentiment"], third["split"], margins=True).to_string(), "\n")
    print("hard cases (their split in the corpus before they moved):")
    print(pd.crosstab(hard["sentiment"], hard["split"], margins=True).to_string(), "\n")
    sentiment_only = corpus[portion == "sentiment only"]
    print(f"hard share of the sentiment-only rows: {(sentiment_only['style'] == 'hard').mean():.3f}; per split:",
          sentiment_only.groupby("split")["style"].apply(lambda s: round((s == "hard").mean(), 3)).to_dict(), "\n")

    words = corpus["text"].str.split().str.len()
    for name, rows in words.groupby(corpus["batch"]):
        shares = {"<12": (rows < 12).mean(), "12-35": rows.between(12, 35).mean(), ">35": (rows > 35).mean()}
        print(f"words per sentence, {name}:", rows.describe(percentiles=[0.1, 0.5, 0.9]).round(1).to_dict(),
              {key: round(value, 2) for key, value in shares.items()})
    print()
    groups = {**{name: rows for name, rows in corpus.groupby("batch", sort=False)}, "hard cases": hard}
    share = pd.DataFrame({name: {cue: hit.mean() for cue, hit in cues(rows["text"]).items()}
                          for name, rows in groups.items()})
    print("share of rows with each cue:")
    print(share.round(3).to_string(), "\n")
    reviews = corpus[(portion == "sentiment only")]
    positive = pd.DataFrame({cue: {"rows": hit.sum(), "share positive": (reviews.loc[hit, "sentiment"] == "positive")
                                   .mean()} for cue, hit in cues(reviews["text"]).items()}).T
    print("sentiment-only rows: each cue's share positive")
    print(positive.round(2).to_string(), "\n")
    before = pd.concat([corpus.iloc[:BATCHES["third batch (December)"][0]], hard])  # the corpus before this batch
    print("word polarity across the sentiment rows, before the third batch and now:")
    print(pd.concat({"before": polarity(before), "now": polarity(corpus)}, axis=1).round(2).to_string(), "\n")

    transfer(corpus, hard)

    encoder = SentenceTransformer()
    embeddings = encoder.encode(corpus["text"].tolist(), batch_size=64, normalize_embeddings=True)
    hard_embeddings = encoder.encode(hard["text"].tolist(), batch_size=64, normalize_embeddings=True)
    train, test = (corpus["split"] == "train").to_numpy(), (corpus["split"] == "test").to_numpy()
    labels = SentenceDataset(corpus).labels
    for task, names in TASKS.items():
        y = np.array(labels[task])
        known = y >= 0
        probe = fit_linear_probe(embeddings[train & known], y[train & known], len(names))
        slices = {name: test & known & (portion == name).to_numpy() for name in sorted(set(portion[known]))}
        if task == "sentiment":
            slices.update({f"sentiment only, {style}": test & known & (portion == "sentiment only").to_numpy()
                           & (corpus["style"] == style).to_numpy() for style in ("plain", "hard")})
        with torch.no_grad():
            for name, rows in slices.items():
                accuracy = (probe(torch.from_numpy(embeddings[rows])).argmax(dim=1).numpy() == y[rows]).mean()
                print(f"linear probe on frozen mean-pooled MiniLM, {task}, {name} test: accuracy {accuracy:.3f} "
                      f"(chance {1 / len(names):.3f})")
            if task == "sentiment":
                truth = hard["sentiment"].map({label: i for i, label in enumerate(names)}).to_numpy()
                accuracy = (probe(torch.from_numpy(hard_embeddings)).argmax(dim=1).numpy() == truth).mean()
                print(f"linear probe on frozen mean-pooled MiniLM, sentiment, hard cases: accuracy {accuracy:.3f}")
    similarity = embeddings @ embeddings.T
    np.fill_diagonal(similarity, 0.0)
    print(f"highest cosine between two different sentences: {similarity.max():.3f}")
    print(f"highest cosine between a validation or test sentence and a training sentence: "
          f"{similarity[~train][:, train].max():.3f}")
    print(f"highest cosine between a hard case and a training sentence: "
          f"{(hard_embeddings @ embeddings[train].T).max():.3f}")


if __name__ == "__main__":
    main()
