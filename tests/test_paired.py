"""Paired comparison of two models on the same sentences: McNemar's exact test and a paired bootstrap."""

import numpy as np
import pytest

from helpers.paired import mcnemar_p, paired_comparison


def test_mcnemar_p_is_the_two_sided_binomial_tail_of_the_disagreements():
    # 8 against 2: P(X <= 2) for X ~ Binomial(10, 1/2) is (1 + 10 + 45) / 1024; two-sided, twice that
    assert mcnemar_p(8, 2) == pytest.approx(2 * 56 / 1024)
    assert mcnemar_p(2, 8) == mcnemar_p(8, 2)
    assert mcnemar_p(0, 0) == 1.0 and mcnemar_p(5, 5) == 1.0


@pytest.mark.parametrize("only_a, only_b", [(30, 12), (7, 0), (50, 49), (1, 20)])
def test_mcnemar_p_matches_scipys_exact_binomial_test(only_a, only_b):
    stats = pytest.importorskip("scipy.stats")
    expected = stats.binomtest(min(only_a, only_b), only_a + only_b, 0.5).pvalue
    assert mcnemar_p(only_a, only_b) == pytest.approx(expected, rel=1e-9)


def test_a_clear_winner_has_an_interval_above_zero_and_a_small_p():
    rng = np.random.default_rng(1)
    b = rng.random(400) < 0.7
    a = b | (rng.random(400) < 0.3)  # A keeps every sentence B gets right and wins about a third of the rest
    result = paired_comparison(a, b)
    assert result["difference"] == pytest.approx(a.mean() - b.mean())
    assert 0 < result["95% low"] < result["difference"] < result["95% high"]
    assert result["only B right"] == 0 and result["only A right"] == int(np.sum(a & ~b))
    assert result["McNemar p"] < 1e-6 and result["sentences"] == 400


def test_identical_verdicts_differ_by_exactly_nothing():
    verdicts = np.random.default_rng(2).random(200) < 0.6
    result = paired_comparison(verdicts, verdicts.copy())
    assert result["difference"] == result["95% low"] == result["95% high"] == 0.0
    assert result["McNemar p"] == 1.0


def test_the_paired_interval_is_narrower_than_the_unpaired_one_for_correlated_errors():
    """Why pair: two models that share most errors differ far less uncertainly than two independent ones."""
    rng = np.random.default_rng(3)
    b = rng.random(500) < 0.75
    a = b.copy()
    flip = rng.choice(500, 30, replace=False)
    a[flip] = True  # A fixes up to 30 of B's errors and keeps everything else
    paired = paired_comparison(a, b)
    unpaired = 1.96 * np.sqrt(a.mean() * (1 - a.mean()) / 500 + b.mean() * (1 - b.mean()) / 500)
    assert paired["95% high"] - paired["95% low"] < unpaired


def test_verdicts_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match=r"two equally long, non-empty 1-D arrays.*\(3,\) and \(2,\)"):
        paired_comparison([True, False, True], [True, False])


def test_verdicts_are_the_predictions_checked_against_the_labelled_rows(tiny_model_dirs):
    import pandas as pd

    from helpers import TASKS, MultiTaskSentenceTransformer, set_seed
    from helpers.metrics import verdicts

    set_seed(0)
    model = MultiTaskSentenceTransformer(TASKS, tiny_model_dirs["bert"])
    frame = pd.DataFrame({"text": ["a good day", "a bad day", "rain again", "sun at last"],
                          "sentiment": ["positive", pd.NA, "negative", "positive"]})
    predicted = model.predict(["a good day", "rain again", "sun at last"])["sentiment"].tolist()
    expected = [p == label for p, label in zip(predicted, ["positive", "negative", "positive"])]
    assert verdicts(model, frame, "sentiment").tolist() == expected
