import time

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch

from helpers import TASKS, MultiTaskSentenceTransformer, set_seed
from helpers.data import split_loaders
from helpers.experiments import measure, run_variant
from helpers.freezing import freeze
from helpers.metrics import confident_mistakes, scores_by_portion
from helpers.probe import fit_heads_on_cached_embeddings, fit_linear_probe
from helpers.training import TrainConfig

matplotlib.use("Agg")

ROWS = [("the team won the final", "sports", "positive"), ("the striker missed a penalty", "sports", "negative"),
        ("profits rose sharply this year", "business", "positive"), ("the bank cut hundreds of jobs", "business",
                                                                      "negative"),
        ("the probe landed safely on the moon", "sci_tech", "positive"), ("the update broke my laptop", "sci_tech",
                                                                          "negative"),
        ("the treaty brought lasting peace", "world", "positive"), ("floods destroyed the old town", "world",
                                                                    "negative")]
CORPUS = pd.DataFrame([{"text": f"{text} {suffix}", "topic": topic, "sentiment": sentiment, "split": split}
                       for split, suffix in [("train", "today"), ("train", "again"), ("val", "indeed"),
                                             ("test", "they say")] for text, topic, sentiment in ROWS])


@pytest.fixture
def model(tiny_model_dirs):
    set_seed(0)
    return MultiTaskSentenceTransformer(TASKS, tiny_model_dirs["bert"])


def test_measure_reports_the_wall_time_of_the_block():
    with measure() as cost:
        time.sleep(0.05)
    assert 0.05 <= cost["seconds"] < 5


def test_split_loaders_cover_each_split(model):
    loaders = split_loaders(CORPUS, model, batch_size=4)
    assert {name: sum(len(b["input_ids"]) for b in loader) for name, loader in loaders.items()} == {
        "train": 16, "val": 8, "test": 8}


def test_run_variant_trains_and_reports_a_row(model):
    freeze(model, "bottom:1")
    history, row = run_variant(model, CORPUS, TrainConfig(epochs=1, device="cpu"), batch_size=4)
    assert set(history["split"]) == {"train", "val"}
    assert {"topic accuracy", "sentiment macro-F1", "seconds", "grad + AdamW MB"} <= set(row)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert row["trained parameters"] == trainable and row["grad + AdamW MB"] == 12 * trainable / 2**20


def test_heads_on_cached_embeddings_change_only_the_heads(model):
    freeze(model, "backbone")
    encoder_before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    heads_before = {k: v.clone() for k, v in model.heads.state_dict().items()}
    fit_heads_on_cached_embeddings(model, CORPUS)
    assert all(torch.equal(v, encoder_before[k]) for k, v in model.encoder.state_dict().items())
    assert all(not torch.equal(v, heads_before[k]) for k, v in model.heads.state_dict().items())


def test_heads_on_cached_embeddings_need_linear_heads(tiny_model_dirs):
    model = MultiTaskSentenceTransformer(TASKS, tiny_model_dirs["bert"], hidden_dim=8)
    with pytest.raises(ValueError, match="not linear"):
        fit_heads_on_cached_embeddings(model, CORPUS)


def test_linear_probe_separates_separable_data():
    rng = np.random.default_rng(0)
    features = np.concatenate([rng.normal(-2, 1, (50, 3)), rng.normal(2, 1, (50, 3))])
    labels = np.array([0] * 50 + [1] * 50)
    probe = fit_linear_probe(features, labels, 2)
    with torch.no_grad():
        predicted = probe(torch.tensor(features, dtype=torch.float32)).argmax(dim=1).numpy()
    assert (predicted == labels).mean() > 0.95


def always_predicts(model, task: str, index: int) -> None:
    """Make ``task``'s head answer label ``index`` for every sentence, with near-certainty."""
    head = model.heads[task]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(-10.0)
        head.bias[index] = 10.0


def test_scores_by_portion_score_each_task_on_each_portion_that_has_its_label(model):
    test = CORPUS[CORPUS["split"] == "test"].copy()
    test.loc[test.index[:2], "topic"] = pd.NA  # two sentiment-only rows (both sports)
    test.loc[test.index[2:5], "sentiment"] = pd.NA  # three topic-only rows
    always_predicts(model, "topic", TASKS["topic"].index("business"))
    always_predicts(model, "sentiment", TASKS["sentiment"].index("positive"))
    table = scores_by_portion(model, test)
    assert set(table.index) == {("sentiment", "aligned"), ("sentiment", "sentiment only"), ("topic", "aligned"),
                                ("topic", "topic only")}  # no sentiment score for topic-only rows, and so on
    assert table["sentences"].to_dict() == {("sentiment", "aligned"): 3, ("sentiment", "sentiment only"): 2,
                                            ("topic", "aligned"): 3, ("topic", "topic only"): 3}
    assert table.loc[("topic", "topic only"), "accuracy"] == pytest.approx(2 / 3)  # business +, business -, sci_tech
    assert table.loc[("topic", "aligned"), "accuracy"] == 0.0  # sci_tech, world, world
    assert table.loc[("sentiment", "sentiment only"), "accuracy"] == pytest.approx(0.5)  # sports +, sports -
    assert table.loc[("sentiment", "aligned"), "accuracy"] == pytest.approx(1 / 3)  # -, +, -


def test_confident_mistakes_are_the_wrong_answers_with_the_highest_probability(model):
    test = CORPUS[CORPUS["split"] == "test"]
    always_predicts(model, "sentiment", TASKS["sentiment"].index("positive"))
    mistakes = confident_mistakes(model, test, n=2)
    sentiment = mistakes[mistakes["task"] == "sentiment"]
    assert len(sentiment) == 2 and (sentiment["label"] == "negative").all()
    assert (sentiment["predicted"] == "positive").all() and (sentiment["probability"] > 0.99).all()
    topic = mistakes[mistakes["task"] == "topic"]
    assert (topic["predicted"] != topic["label"]).all()
    assert topic["probability"].is_monotonic_decreasing


def test_confident_mistakes_leave_out_answers_below_the_floor(model):
    test = CORPUS[CORPUS["split"] == "test"]
    always_predicts(model, "sentiment", TASKS["sentiment"].index("positive"))
    mistakes = confident_mistakes(model, test, n=8, min_probability=0.99)
    assert (mistakes["probability"] >= 0.99).all()
    assert (mistakes["task"] == "sentiment").sum() == 4  # every negative sentence, predicted positive at ~1.0
    with torch.no_grad():
        model.heads["sentiment"].bias.zero_()  # now every answer is a coin flip
    assert (confident_mistakes(model, test, n=8, min_probability=0.99)["task"] != "sentiment").all()


def test_a_single_task_model_is_scored_on_the_corpus_portions(tiny_model_dirs):
    set_seed(0)
    sentiment_model = MultiTaskSentenceTransformer({"sentiment": TASKS["sentiment"]}, tiny_model_dirs["bert"])
    test = CORPUS[CORPUS["split"] == "test"].copy()
    test.loc[test.index[:2], "topic"] = pd.NA
    table = scores_by_portion(sentiment_model, test)
    assert table["sentences"].to_dict() == {("sentiment", "aligned"): 6, ("sentiment", "sentiment only"): 2}


def objective_gradient(head: torch.nn.Linear, features: np.ndarray, labels: np.ndarray) -> float:
    """The largest entry of the gradient of the probe's objective (cross-entropy + 1e-3 L2) at ``head``."""
    head.zero_grad()
    x, y = torch.tensor(features), torch.tensor(labels)
    loss = torch.nn.functional.cross_entropy(head(x), y) + 1e-3 * head.weight.pow(2).sum()
    loss.backward()
    return max(parameter.grad.abs().max().item() for parameter in head.parameters())


def test_the_heads_only_fit_converges(model):
    """The heads-only baseline is the minimum of a convex objective, not wherever an optimizer stopped."""
    freeze(model, "backbone")
    fit_heads_on_cached_embeddings(model, CORPUS)
    train_rows = CORPUS[CORPUS["split"] == "train"]
    features = model.encoder.encode(train_rows["text"].tolist())
    for task, labels in TASKS.items():
        targets = train_rows[task].map({label: i for i, label in enumerate(labels)}).to_numpy()
        assert objective_gradient(model.heads[task], features, targets) < 1e-4, task


def test_a_probe_stopped_short_of_convergence_says_so():
    features = np.random.default_rng(0).normal(size=(200, 16)).astype(np.float32)
    labels = (features[:, 0] + 0.5 * features[:, 1] > 0).astype(int)
    with pytest.warns(RuntimeWarning, match="did not converge in 2 L-BFGS iterations"):
        fit_linear_probe(features, labels, 2, max_iter=2)


def test_run_variant_scores_the_test_split_in_the_configs_precision(model, monkeypatch):
    from helpers import experiments

    seen = []
    real = experiments.evaluate

    def spy(scored_model, loader, **kwargs):
        seen.append(([text for batch in loader for text in scored_model.encoder.tokenizer.batch_decode(
            batch["input_ids"], skip_special_tokens=True)], kwargs))
        return real(scored_model, loader, **kwargs)

    monkeypatch.setattr(experiments, "evaluate", spy)
    freeze(model, "bottom:1")
    run_variant(model, CORPUS, TrainConfig(epochs=1, device="cpu", precision="fp32"), batch_size=4)
    texts, kwargs = seen[-1]
    assert sorted(texts) == sorted(CORPUS.loc[CORPUS["split"] == "test", "text"])
    assert kwargs == {"precision": "fp32"}


def test_fresh_models_have_the_same_heads_and_cache_what_their_strategy_freezes(tiny_model_dirs):
    from helpers.experiments import fresh_model

    first = fresh_model("bottom:1", model_name=tiny_model_dirs["bert"])
    second = fresh_model("backbone", model_name=tiny_model_dirs["bert"], share_cache_with=first)
    assert torch.equal(first.heads["topic"].weight, second.heads["topic"].weight)
    assert first.encoder.bottom_cache.n_layers == 1 and second.encoder.bottom_cache is first.encoder.bottom_cache
    assert fresh_model("none", model_name=tiny_model_dirs["bert"]).encoder.bottom_cache is None
    assert fresh_model("embeddings", model_name=tiny_model_dirs["bert"]).encoder.bottom_cache is None  # a lookup
    assert fresh_model("bottom:2", model_name=tiny_model_dirs["bert"], cache=False).encoder.bottom_cache is None
    assert sum(p.requires_grad for p in second.encoder.parameters()) == 0


def test_heads_fitted_on_given_features_equal_heads_fitted_on_encoded_ones(tiny_model_dirs):
    from helpers.experiments import fresh_model

    encoded, given = (fresh_model("backbone", model_name=tiny_model_dirs["bert"]) for _ in range(2))
    fit_heads_on_cached_embeddings(encoded, CORPUS)
    train_texts = CORPUS.loc[CORPUS["split"] == "train", "text"].tolist()
    fit_heads_on_cached_embeddings(given, CORPUS, features=given.encoder.encode(train_texts))
    for task in TASKS:
        torch.testing.assert_close(given.heads[task].weight, encoded.heads[task].weight)
    with pytest.raises(ValueError, match="features has 3 rows but the corpus 16 training rows"):
        fit_heads_on_cached_embeddings(given, CORPUS, features=np.zeros((3, 32), dtype=np.float32))
