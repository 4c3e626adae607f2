"""The walkthrough's figures: one idea per figure, titled, axes labelled. Used by all four notebooks."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes


def heatmap(matrix: np.ndarray, row_labels: Sequence[str], col_labels: Sequence[str], title: str,
            xlabel: str = "", ylabel: str = "", fmt: str = "{:.2f}", cmap: str = "viridis",
            ax: Axes | None = None) -> Axes:
    """A labelled matrix with its values written in the cells (similarities, confusion matrices)."""
    matrix = np.asarray(matrix)
    if ax is None:
        size = max(4.0, 0.6 * len(col_labels) + 2)
        _, ax = plt.subplots(figsize=(size, max(3.0, 0.5 * len(row_labels) + 1.5)))
    image = ax.imshow(matrix, cmap=cmap)
    ax.set_xticks(range(len(col_labels)), col_labels, rotation=45, ha="right")
    ax.set_yticks(range(len(row_labels)), row_labels)
    for (i, j), value in np.ndenumerate(matrix):
        red, green, blue, _ = image.cmap(image.norm(value))
        light_cell = 0.299 * red + 0.587 * green + 0.114 * blue > 0.5
        ax.text(j, i, fmt.format(value), ha="center", va="center", fontsize=8,
                color="black" if light_cell else "white")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return ax


def grouped_bars(table: pd.DataFrame, title: str, ylabel: str, ax: Axes | None = None,
                 ylim: tuple[float, float] | None = None) -> Axes:
    """Bars for each row of ``table``, one colour per column, values printed on top."""
    if ax is None:
        _, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(table)), 3.5))
    table.plot.bar(ax=ax, rot=0, width=0.8)
    ax.legend(loc="lower right", framealpha=0.9)
    for container in ax.containers:
        ax.bar_label(container, fmt="%.2f", fontsize=8)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.set_xlabel(table.index.name or "")
    if ylim is not None:
        ax.set_ylim(*ylim)
    return ax


def architecture_diagram(model, title: str = "Hard parameter sharing: one encoder, one head per task") -> Axes:
    """Boxes and arrows for a MultiTaskSentenceTransformer, drawn from the model itself."""
    from matplotlib.patches import FancyBboxPatch

    encoder = model.encoder
    n_layers = encoder.backbone.config.num_hidden_layers
    n_encoder = sum(p.numel() for p in encoder.parameters())
    tasks = list(model.tasks.items())
    _, ax = plt.subplots(figsize=(11, 1.6 + 1.2 * len(tasks)))
    ax.set_xlim(0, 11)
    ax.set_ylim(-0.6 * len(tasks) - 0.4, 0.6 * len(tasks) + 0.6)
    ax.axis("off")

    def box(x: float, y: float, text: str, colour: str, width: float = 1.7) -> None:
        ax.add_patch(FancyBboxPatch((x - width / 2, y - 0.38), width, 0.76, boxstyle="round,pad=0.05",
                                    facecolor=colour, edgecolor="0.3"))
        ax.text(x, y, text, ha="center", va="center", fontsize=9)

    def arrow(x0: float, y0: float, x1: float, y1: float) -> None:
        ax.annotate("", (x1, y1), (x0, y0), arrowprops={"arrowstyle": "->", "color": "0.3"})

    shared = "#cfe2f3"
    box(0.9, 0, "sentences", "white", 1.3)
    box(2.8, 0, "tokenizer\n(word pieces)", shared)
    box(5.0, 0, f"shared encoder\n{type(encoder.backbone).__name__}, {n_layers} layers\n"
                f"{n_encoder / 1e6:.1f} M parameters", shared, 2.1)
    box(7.2, 0, f"{encoder.pooling} pooling\n+ dropout {model.dropout.p:g}", shared)
    for x0, x1 in [(1.55, 1.95), (3.65, 3.95), (6.05, 6.35)]:
        arrow(x0, 0, x1, 0)
    ys = np.linspace(0.6 * (len(tasks) - 1), -0.6 * (len(tasks) - 1), len(tasks)) if len(tasks) > 1 else [0.0]
    for (task, labels), y in zip(tasks, ys):
        head = model.heads[task]
        n_head = sum(p.numel() for p in head.parameters())
        arrow(8.05, 0, 8.45, y)
        box(9.7, y, f"{task} head\n{len(labels)} classes\n{n_head:,} parameters", "#fde9c9", 2.2)
    ax.set_title(title)
    return ax


def loss_curves(history: pd.DataFrame, title: str = "Loss during training") -> np.ndarray:
    """One panel per task plus the total: training loss (per logging window) and validation loss."""
    tasks = [task for task in history["task"].unique() if task != "total"] + ["total"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.2), sharex=True)
    for ax, task in zip(axes, tasks):
        for split, style in [("train", "-"), ("val", "o-")]:
            rows = history[(history["split"] == split) & (history["task"] == task)]
            ax.plot(rows["step"], rows["loss"], style, label=split, markersize=4)
        ax.set_title(task)
        ax.set_xlabel("step")
        ax.set_ylabel("cross-entropy" if task != "total" else "weighted sum")
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return axes


def metric_curves(history: pd.DataFrame, title: str = "Validation metrics during training") -> np.ndarray:
    """Validation accuracy and macro-F1 per task against the training step."""
    val = history[(history["split"] == "val") & (history["task"] != "total")]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2), sharey=True)
    for ax, metric in zip(axes, ["accuracy", "macro_f1"]):
        for task, rows in val.groupby("task", sort=False):
            ax.plot(rows["step"], rows[metric], "o-", label=task, markersize=4)
        ax.set_title(metric.replace("_", "-"))
        ax.set_xlabel("step")
        ax.set_ylabel(metric.replace("_", "-"))
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return axes


def embedding_maps(maps: dict[str, np.ndarray], labels: pd.DataFrame, title: str) -> np.ndarray:
    """A grid of 2-D scatter plots: one row per embedding space (``maps``: name -> (n, 2) points), one
    column per label column of ``labels`` (rows without that label are left out of that column)."""
    fig, axes = plt.subplots(len(maps), len(labels.columns), figsize=(5.2 * len(labels.columns), 4.2 * len(maps)),
                             squeeze=False)
    for row, (name, points) in enumerate(maps.items()):
        for column, task in enumerate(labels.columns):
            ax, known = axes[row, column], labels[task].notna().to_numpy()
            for label in sorted(labels[task].dropna().unique()):
                chosen = known & (labels[task] == label).to_numpy()
                ax.scatter(points[chosen, 0], points[chosen, 1], s=8, alpha=0.6, label=label)
            ax.set_title(f"{name}, coloured by {task}")
            ax.set_xlabel("first principal component")
            ax.set_ylabel("second principal component")
            ax.legend(markerscale=2, fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return axes
