"""The committed corpus: schema, balance, splits, variety, no leakage, hard enough to measure."""

import re

import numpy as np
import torch

from helpers import SPLITS, TASKS, SentenceDataset, label_portions
from helpers.data import CORPUS_PATH
from helpers.probe import fit_linear_probe


def normalized(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def test_schema():
    assert CORPUS_PATH.read_text(encoding="utf-8").splitlines()[0] == "text,topic,sentiment,split"


def test_every_topic_sentiment_cell_has_at_least_200_sentences(corpus):
    counts = corpus.groupby(["topic", "sentiment"]).size()
    assert len(counts) == 8 and counts.min() >= 200 and counts.sum() >= 1600


def test_the_non_aligned_portions_are_large_and_balanced(corpus):
    portions = label_portions(corpus)
    assert set(portions) == {"aligned", "sentiment only", "topic only"}
    sentiment_only, topic_only = corpus[portions == "sentiment only"], corpus[portions == "topic only"]
    assert len(sentiment_only) >= 1200 and len(topic_only) >= 600
    assert sentiment_only["sentiment"].value_counts().nunique() == 1  # as many negative as positive
    assert topic_only["topic"].value_counts().nunique() == 1 and topic_only["topic"].nunique() == 4


def test_splits_are_70_15_15_in_every_cell_of_every_portion(corpus):
    cells = corpus.groupby([label_portions(corpus), corpus["topic"], corpus["sentiment"]], dropna=False)
    assert len(cells) == 8 + 2 + 4
    for _, cell in cells:
        shares = cell["split"].value_counts(normalize=True)
        assert set(shares.index) == set(SPLITS)
        assert abs(shares["train"] - 0.70) < 0.01 and abs(shares["val"] - 0.15) < 0.01
        assert abs(shares["test"] - 0.15) < 0.01


def test_sentence_lengths(corpus):
    words = corpus["text"].str.split().str.len()
    aligned = (label_portions(corpus) == "aligned").to_numpy()
    assert words[aligned].min() >= 5 and words[aligned].max() <= 45
    assert words[~aligned].min() >= 3 and words[~aligned].max() <= 60


def test_no_text_in_two_splits_even_after_normalising(corpus):
    keys = corpus["text"].map(normalized)
    assert not keys.duplicated().any()


def test_no_templates_differing_only_by_names_or_numbers(corpus):
    def skeleton(text: str) -> str:
        words = text.split()
        kept = [w for i, w in enumerate(words) if not re.search(r"\d", w) and not (i > 0 and w[:1].isupper())]
        return normalized(" ".join(kept))

    skeletons = corpus["text"].map(skeleton)
    assert not skeletons.duplicated().any(), corpus["text"][skeletons.duplicated(keep=False)].tolist()


def test_no_near_duplicates(corpus_embeddings):
    similarity = corpus_embeddings @ corpus_embeddings.T
    np.fill_diagonal(similarity, 0.0)
    assert similarity.max() < 0.95


def test_no_validation_or_test_sentence_is_a_near_copy_of_a_training_sentence(corpus, corpus_embeddings):
    """A held-out sentence within cosine 0.9 of a training sentence would be scored on what was memorised."""
    train = (corpus["split"] == "train").to_numpy()
    held_out = corpus_embeddings[~train] @ corpus_embeddings[train].T
    assert held_out.max() < 0.9


def test_a_linear_probe_on_frozen_embeddings_is_good_but_not_perfect(corpus, corpus_embeddings):
    dataset = SentenceDataset(corpus)
    train, test = (corpus["split"] == "train").to_numpy(), (corpus["split"] == "test").to_numpy()
    for task, labels in TASKS.items():
        y = np.array(dataset.labels[task])
        known = y >= 0
        probe = fit_linear_probe(corpus_embeddings[train & known], y[train & known], len(labels))
        with torch.no_grad():
            predicted = probe(torch.from_numpy(corpus_embeddings[test & known])).argmax(dim=1).numpy()
        accuracy = float((predicted == y[test & known]).mean())
        assert 1 / len(labels) + 0.2 < accuracy < 1.0, (task, accuracy)
