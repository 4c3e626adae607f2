import matplotlib
import numpy as np
import pandas as pd

from helpers import TASKS, MultiTaskSentenceTransformer
from helpers.plots import architecture_diagram, grouped_bars, heatmap, loss_curves, metric_curves

matplotlib.use("Agg")

HISTORY = pd.DataFrame([
    {"epoch": 1, "step": s, "split": split, "task": task, "loss": 1 / s, "accuracy": 0.5, "macro_f1": 0.5}
    for s in (1, 2) for split in ("train", "val") for task in ("topic", "sentiment", "total")])


def test_every_figure_has_a_title_and_labelled_axes(tiny_model_dirs):
    axes = [heatmap(np.eye(2), ["a", "b"], ["a", "b"], "T", xlabel="x", ylabel="y"),
            grouped_bars(pd.DataFrame({"u": [1.0, 2.0]}, index=pd.Index(["p", "q"], name="x")), "T", "y"),
            *loss_curves(HISTORY), *metric_curves(HISTORY)]
    for ax in axes:
        assert ax.get_title() and ax.get_ylabel() and ax.get_xlabel()
    diagram = architecture_diagram(MultiTaskSentenceTransformer(TASKS, tiny_model_dirs["bert"]))
    texts = " ".join(t.get_text() for t in diagram.texts)
    assert diagram.get_title() and "topic head" in texts and "sentiment head" in texts


def test_loss_curves_draw_one_panel_per_task_plus_total():
    assert [ax.get_title() for ax in loss_curves(HISTORY)] == ["topic", "sentiment", "total"]
