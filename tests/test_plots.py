import math

import matplotlib
import numpy as np
import pandas as pd
import pytest

from helpers import TASKS, MultiTaskSentenceTransformer
from helpers.plots import (
    LABEL_COLOURS,
    TASK_COLOURS,
    accuracy_curves,
    architecture_diagram,
    embedding_maps,
    grouped_bars,
    heatmap,
    loss_curves,
)

matplotlib.use("Agg")

HISTORY = pd.DataFrame([
    {"epoch": 1, "step": s, "split": split, "task": task, "loss": 1 / s, "accuracy": 0.5, "macro_f1": 0.5,
     "weight": None if task == "total" else 1.0}
    for s in (1, 2) for split in ("train", "val") for task in ("topic", "sentiment", "total")])


def test_every_figure_has_a_title_and_labelled_axes(tiny_model_dirs):
    axes = [heatmap(np.eye(2), ["a", "b"], ["a", "b"], "T", xlabel="x", ylabel="y"),
            grouped_bars(pd.DataFrame({"u": [1.0, 2.0]}, index=pd.Index(["p", "q"], name="x")), "T", "y"),
            *loss_curves(HISTORY, TASKS), *accuracy_curves(HISTORY, TASKS)]
    for ax in axes:
        assert ax.get_title() and ax.get_ylabel() and ax.get_xlabel()
    diagram = architecture_diagram(MultiTaskSentenceTransformer(TASKS, tiny_model_dirs["bert"]))
    texts = " ".join(t.get_text() for t in diagram.texts)
    assert diagram.get_title() and "topic head" in texts and "sentiment head" in texts


def uniform_guess(ax) -> list[float]:
    return [line.get_ydata()[0] for line in ax.lines if line.get_linestyle() == ":"]


def test_loss_curves_draw_one_panel_per_task_plus_total_with_the_uniform_guess():
    axes = loss_curves(HISTORY, TASKS)
    assert [ax.get_title() for ax in axes] == ["topic", "sentiment", "total"]
    assert uniform_guess(axes[0]) == [math.log(4)] and uniform_guess(axes[1]) == [math.log(2)]
    assert uniform_guess(axes[2]) == [pytest.approx(math.log(4) + math.log(2))]
    static = HISTORY.assign(weight=HISTORY["task"].map({"topic": 0.5, "sentiment": 2.0}))
    assert uniform_guess(loss_curves(static, TASKS)[2]) == [pytest.approx(0.5 * math.log(4) + 2 * math.log(2))]
    learned = HISTORY.assign(weight=HISTORY["step"].map({1: 1.0, 2: 0.9}).where(HISTORY["task"] != "total"))
    assert uniform_guess(loss_curves(learned, TASKS)[2]) == []  # no fixed total to compare with


def test_accuracy_curves_show_chance_and_stay_near_a_thousand_pixels_wide():
    axes = accuracy_curves(HISTORY, TASKS)
    assert uniform_guess(axes[0]) == [0.25] and uniform_guess(axes[1]) == [0.5]
    for figure in (axes[0].figure, loss_curves(HISTORY, TASKS)[0].figure):
        assert figure.get_size_inches()[0] * figure.dpi <= 1100


def test_a_hidden_diagonal_is_out_of_the_colour_scale():
    ax = heatmap(np.array([[1.0, 0.2], [0.4, 1.0]]), ["a", "b"], ["a", "b"], "T", hide_diagonal=True)
    image = ax.images[0]
    assert image.norm.vmin == 0.2 and image.norm.vmax == 0.4
    ax = heatmap(np.array([[40, 3], [5, 50]]), ["a", "b"], ["a", "b"], "T", vmin=0)
    assert ax.images[0].norm.vmin == 0


def test_labels_keep_their_colour_and_the_task_spec_order():
    points = np.arange(16.0).reshape(8, 2)
    labels = pd.DataFrame({"topic": ["sports", "world", "business", "sci_tech"] * 2,
                           "sentiment": ["positive", "negative", pd.NA, "negative"] * 2})
    axes = embedding_maps({"space": points}, labels, TASKS, "T")
    topic = axes[0, 0]
    assert [text.get_text() for text in topic.get_legend().get_texts()] == TASKS["topic"]
    assert [matplotlib.colors.to_hex(c.get_facecolor()[0]) for c in topic.collections] == [
        LABEL_COLOURS[label].lower() for label in TASKS["topic"]]
    assert sum(len(c.get_offsets()) for c in axes[0, 1].collections) == 6  # the rows without sentiment are left out


def test_the_diagram_keeps_the_tokenizer_out_of_the_encoder_colours_heads_by_task_and_fits_1000_px(tiny_model_dirs):
    ax = architecture_diagram(MultiTaskSentenceTransformer(TASKS, tiny_model_dirs["bert"]))
    boxes = {patch.get_gid(): patch for patch in ax.patches}
    assert boxes["tokenizer"].get_facecolor() != boxes["backbone"].get_facecolor()  # no weights, not shared
    assert boxes["backbone"].get_facecolor() == boxes["pooling"].get_facecolor()
    for task in TASKS:
        head = boxes[f"head: {task}"]
        assert matplotlib.colors.to_hex(head.get_edgecolor()) == TASK_COLOURS[task].lower()
        assert min(head.get_facecolor()[:3]) > 0.6  # a light tint of the task's colour: black text stays legible
    assert boxes["head: topic"].get_facecolor() != boxes["head: sentiment"].get_facecolor()
    assert ax.figure.get_size_inches()[0] * ax.figure.dpi <= 1000


def test_a_similarity_heatmap_can_use_a_fixed_diverging_scale_centred_on_zero():
    similarity = np.array([[1.0, 0.34, -0.14], [0.34, 1.0, 0.07], [-0.14, 0.07, 1.0]])
    ax = heatmap(similarity, list("abc"), list("abc"), "T", hide_diagonal=True, cmap="RdBu_r", vmin=-1, vmax=1)
    image = ax.images[0]
    assert (image.norm.vmin, image.norm.vmax) == (-1, 1)  # the stated scale wins over the data's range
    assert image.norm(0.0) == 0.5  # zero sits in the middle of the palette
    assert min(image.cmap(image.norm(0.0))[:3]) > 0.9  # and is drawn near white: a pale cell means a low score
