"""The committed corpus and its hard cases: schema, balance, splits, variety, style, no leakage, hard enough."""

import re

import numpy as np
import pandas as pd
import torch

from helpers import SPLITS, TASKS, SentenceDataset, label_portions
from helpers.data import CORPUS_PATH, HARD_CASES_PATH
from helpers.probe import fit_linear_probe


def normalized(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def test_schema():
    for path in (CORPUS_PATH, HARD_CASES_PATH):
        assert path.read_text(encoding="utf-8").splitlines()[0] == "text,topic,sentiment,split,style"


def test_every_sentiment_row_has_a_style_and_the_hard_cases_are_hard_reviews(corpus, hard_cases):
    assert corpus["style"].notna().equals(corpus["sentiment"].notna())
    assert set(corpus["style"].dropna()) == {"plain", "hard"}
    assert (hard_cases["style"] == "hard").all() and hard_cases["sentiment"].notna().all()
    assert hard_cases["topic"].isna().all() and hard_cases["sentiment"].value_counts().nunique() == 1


def test_hard_patterns_are_a_minority_of_the_reviews_in_every_split(corpus):
    """Reviews in hard patterns (negated sentiment words, sarcasm, litotes...) stay near their rate in real text."""
    reviews = corpus[label_portions(corpus) == "sentiment only"]
    share = reviews.groupby("split")["style"].apply(lambda style: (style == "hard").mean())
    assert share.between(0.1, 0.17).all(), share.to_dict()  # measured 0.15 in each split


def test_plain_sentiment_words_keep_their_usual_polarity(corpus):
    rows = corpus[corpus["sentiment"].notna()]
    for word, usual in {"great": "positive", "love": "positive", "best": "positive", "excellent": "positive",
                        "bad": "negative", "worst": "negative", "boring": "negative", "awful": "negative"}.items():
        hit = rows["text"].str.contains(rf"\b{word}\b", case=False)
        assert hit.sum() >= 25 and (rows.loc[hit, "sentiment"] == usual).mean() > 0.6, word


def test_surface_cues_do_not_give_the_label_away(corpus):
    reviews = corpus[label_portions(corpus) == "sentiment only"]
    for cue in (r"!$", r"\?", r"'\w+'", r"can't say|won't pretend", r"^I\b"):
        hit = reviews["text"].str.contains(cue)
        assert hit.sum() >= 20 and 0.3 < (reviews.loc[hit, "sentiment"] == "positive").mean() < 0.7, cue


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


def test_no_text_in_two_splits_even_after_normalising(corpus, hard_cases):
    keys = pd.concat([corpus["text"], hard_cases["text"]]).map(normalized)
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


def test_no_held_out_sentence_is_a_near_copy_of_a_training_sentence(minilm, corpus, corpus_embeddings, hard_cases):
    """A held-out sentence (validation, test, hard case) within cosine 0.9 of a training sentence would be scored
    on what was memorised."""
    train = (corpus["split"] == "train").to_numpy()
    hard = minilm.encode(hard_cases["text"].tolist(), batch_size=64, normalize_embeddings=True)
    held_out = np.concatenate([corpus_embeddings[~train], hard]) @ corpus_embeddings[train].T
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
