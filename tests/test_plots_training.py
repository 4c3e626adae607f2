"""Notebook 04's figures: models get colours of their own, and the embedding maps share ranges within a row."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from helpers.data import TASKS  # noqa: E402
from helpers.plots import LABEL_COLOURS, TASK_COLOURS, colour, embedding_maps  # noqa: E402


def test_names_that_are_neither_task_nor_label_never_take_their_colours():
    taken = {c.lower() for c in [*TASK_COLOURS.values(), *LABEL_COLOURS.values()]}
    models = [colour(name, position) for position, name in enumerate(["heads only", "multi-task", "single-task"])]
    assert len(set(models)) == 3 and not taken & {c.lower() for c in models}
    assert colour("topic", 1) == TASK_COLOURS["topic"] and colour("negative", 3) == LABEL_COLOURS["negative"]


def test_embedding_maps_share_ranges_within_a_row_and_fit_a_thousand_pixels():
    rng = np.random.default_rng(0)
    labels = pd.DataFrame({"topic": rng.choice(TASKS["topic"], 40),
                           "sentiment": [None] * 20 + list(rng.choice(TASKS["sentiment"], 20))})
    maps = {"small": rng.normal(size=(40, 2)), "large": 10 * rng.normal(size=(40, 2))}
    axes = embedding_maps(maps, labels, TASKS, "T")
    for row in axes:
        assert row[0].get_xlim() == row[1].get_xlim() and row[0].get_ylim() == row[1].get_ylim()
    assert axes[0, 0].get_xlim() != axes[1, 0].get_xlim()
    figure = axes[0, 0].figure
    assert figure.get_size_inches()[0] * figure.dpi <= 1000
    plt.close(figure)
