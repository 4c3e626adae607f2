"""The saved studies still say what the notebooks, the README and the data card say they say.

The notebooks read `benchmarks/results/*.csv` and put its numbers into prose. A study run again (`make studies`)
can come out otherwise; these tests hold each claim to its table, so that such a run fails here, where the prose
has to be revised, rather than leaving a page that contradicts its own table. Each margin is the one the prose
states (beyond noise: an interval that excludes 0; within noise: one that contains it).
"""

from pathlib import Path

import pandas as pd
import pytest

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def read(study: str, index: list[int]) -> pd.DataFrame:
    return pd.read_csv(RESULTS / f"{study}.csv", index_col=index)


def beyond_noise(row: pd.Series, prefix: str = "") -> int:
    """+1 when the paired interval lies above 0, -1 below, 0 when it contains 0."""
    low, high = row[f"{prefix}gain 95% low"], row[f"{prefix}gain 95% high"]
    return 1 if low > 0 else -1 if high < 0 else 0


@pytest.fixture(scope="module")
def recipes() -> pd.DataFrame:
    return read("recipes", [0, 1])


def test_every_recipe_names_its_strategy_as_the_naming_table_does(recipes):
    strategies = recipes["strategy"].groupby(level="recipe").first().to_dict()
    assert strategies == {"heads only": "backbone", "top 1": "bottom:5", "top 2": "bottom:4", "top 3": "bottom:3",
                          "top 6": "embeddings", "full": "none"}


def test_recipes_deeper_and_longer_costs_more_seconds(recipes):
    trained = recipes.drop(("heads only", "-"))
    for recipe, rows in trained.groupby(level="recipe"):
        assert rows.loc[(recipe, "2"), "seconds"] > rows.loc[(recipe, "1"), "seconds"], recipe
    assert recipes.loc[("top 1", "1"), "seconds"] < recipes.loc[("top 3", "1"), "seconds"] < \
        recipes.loc[("top 6", "1"), "seconds"]


def test_recipes_the_cpu_recipe_beats_heads_only_beyond_noise(recipes):
    """Notebook 03 chooses top 3, 1 epoch, as a clear gain over heads only within a CPU budget."""
    assert beyond_noise(recipes.loc[("top 3", "1")]) == 1


def test_recipes_freezing_the_embeddings_costs_nothing_measurable(recipes):
    """Notebook 03: top 6 (embeddings frozen) against full fine-tuning, the same epochs."""
    for epochs in ("1", "2"):
        top6, full = recipes.loc[("top 6", epochs)], recipes.loc[("full", epochs)]
        assert abs(top6["sentiment, pooled"] - full["sentiment, pooled"]) < 0.02, epochs


def test_design_cls_pooling_is_never_better_than_mean():
    design = read("design", [0, 1, 2])
    cls = design[design.index.get_level_values("design").str.startswith("cls")]
    assert (cls["sentiment: gain 95% low"] < 0).all()  # never better beyond noise
    frozen = design.loc[("heads only", "cls", "-")]
    assert frozen["sentiment: gain"] < -0.01 and beyond_noise(frozen, "sentiment: ") == 0  # 2 points, within noise
    trained = design.loc[design.index.get_level_values("training") != "heads only"]
    assert trained.xs("cls, dropout 0.1", level="design")["sentiment: gain"].abs().max() < 0.01  # within a point


def test_design_dropout_after_pooling_costs_sentiment_in_one_epoch():
    design = read("design", [0, 1, 2])
    without = design.xs("mean, no dropout", level="design")
    assert (without["sentiment: gain"] > 0.005).all()  # both seeds: about a point higher without dropout
    assert (without["sentiment: McNemar p"] < 0.1).all() and (without["sentiment: McNemar p"] < 0.01).any()
    assert without["topic: gain"].abs().max() < 0.01


def test_batching_length_groups_skew_the_task_mix_and_per_portion_batches_help_sentiment():
    batching = read("batching", [0, 1])
    skewed = batching["batches with <= 10% topic labels"]
    assert (skewed.xs("random", level="batching") == 0).all()
    assert (skewed.xs("length", level="batching") > 0.03).all()
    assert (skewed.xs("portion", level="batching") > 0.5).all()
    portion = batching.xs("portion", level="batching")
    assert (portion["sentiment: gain"] > 0.01).all() and (portion["sentiment: McNemar p"] < 0.05).any()
    assert (portion["topic: gain 95% low"] < 0).all() and (portion["topic: gain 95% high"] > 0).all()
    random = batching.xs("random", level="batching")
    assert (random["sentiment: gain 95% low"] < 0).all() and (random["sentiment: gain 95% high"] > 0).all()
    assert (random["seconds"] > batching.xs("length", level="batching")["seconds"]).all()  # padding costs time


def test_sharing_the_encoder_costs_sentiment_beyond_noise():
    sharing = read("sharing", [0])
    assert beyond_noise(sharing.loc["multi-task"]) == -1
    assert sharing.loc["single-task sentiment", "seconds"] < sharing.loc["multi-task", "seconds"]


def test_backbones_bert_base_costs_several_times_minilm():
    backbones = read("backbones", [0])
    minilm, bert = backbones.loc["all-MiniLM-L6-v2"], backbones.loc["bert-base-uncased"]
    assert bert["seconds per step"] > 3 * minilm["seconds per step"]
    assert bert["peak memory, training (GB)"] > 2 * minilm["peak memory, training (GB)"]
    assert bert["parameters"] > 4.5 * minilm["parameters"]
