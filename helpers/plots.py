"""The walkthrough's figures: one idea per figure, titled, axes labelled."""

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
    middle = (matrix.max() + matrix.min()) / 2
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, fmt.format(value), ha="center", va="center", fontsize=8,
                color="black" if value > middle else "white")
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
    for container in ax.containers:
        ax.bar_label(container, fmt="%.2f", fontsize=8)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.set_xlabel(table.index.name or "")
    if ylim is not None:
        ax.set_ylim(*ylim)
    return ax
