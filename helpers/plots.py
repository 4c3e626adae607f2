"""The walkthrough's figures: one idea per figure, titled, axes labelled. Used by all four notebooks.

One colour-blind-safe palette per meaning, the same in every notebook: each label of each task (in the
task spec's order), each task, and each side of a comparison. Training is a line and validation dots;
chance is a dotted grey line. Legends sit outside the data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes

# Okabe & Ito (2008): distinguishable with every common colour-vision deficiency.
LABEL_COLOURS = {"world": "#0072B2", "sports": "#009E73", "business": "#E69F00", "sci_tech": "#CC79A7",
                 "negative": "#D55E00", "positive": "#56B4E9"}
# Paul Tol's muted palette, for what is not a label: tasks, and the two sides of a comparison.
TASK_COLOURS = {"topic": "#332288", "sentiment": "#882255"}
PAIR_COLOURS = ("#117733", "#DDCC77")
CHANCE = {"color": "0.5", "linestyle": ":", "linewidth": 1.2}
_OTHER_COLOURS = ("#44AA99", "#AA4499", "#999933", "#88CCEE", "#661100")


def colour(name: str, position: int = 0) -> str:
    """The colour of a label or task by name; other names get colours by position."""
    return LABEL_COLOURS.get(name) or TASK_COLOURS.get(name) or _OTHER_COLOURS[position % len(_OTHER_COLOURS)]


def legend_outside(ax: Axes, **options) -> None:
    """A legend to the right of the axes, where it hides no data."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False, **options)


def heatmap(matrix: np.ndarray, row_labels: Sequence[str], col_labels: Sequence[str], title: str,
            xlabel: str = "", ylabel: str = "", fmt: str = "{:.2f}", cmap: str = "viridis",
            ax: Axes | None = None, vmin: float | None = None, vmax: float | None = None,
            hide_diagonal: bool = False) -> Axes:
    """A labelled matrix with its values written in the cells (similarities, confusion matrices).

    ``vmin=0`` makes a count's colour honest (zero is the bottom of the scale). ``hide_diagonal`` leaves the
    diagonal out of the colour scale and greys it (a similarity of 1.00 to itself says nothing).
    """
    matrix = np.asarray(matrix)
    if ax is None:
        size = max(4.0, 0.6 * len(col_labels) + 2)
        _, ax = plt.subplots(figsize=(size, max(3.0, 0.5 * len(row_labels) + 1.5)))
    shown = np.ma.masked_where(np.eye(*matrix.shape, dtype=bool), matrix) if hide_diagonal else matrix
    palette = plt.get_cmap(cmap).with_extremes(bad="0.85")
    image = ax.imshow(shown, cmap=palette, vmin=vmin, vmax=vmax)
    ax.set_xticks(range(len(col_labels)), col_labels, rotation=45, ha="right")
    ax.set_yticks(range(len(row_labels)), row_labels)
    for (i, j), value in np.ndenumerate(matrix):
        if hide_diagonal and i == j:
            ax.text(j, i, "–", ha="center", va="center", fontsize=8, color="0.4")
            continue
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
                 ylim: tuple[float, float] | None = None, errors: pd.DataFrame | None = None,
                 colours: Sequence[str] | None = None, chance: float | None = None) -> Axes:
    """Bars for each row of ``table``, one colour per column (a task's own colour where a column names
    it), values printed on top; ``errors`` (same shape) draws error bars, ``chance`` a dotted line."""
    if ax is None:
        _, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(table)), 3.5))
    if colours is None:
        colours = [colour(str(column).split()[0], i) for i, column in enumerate(table.columns)]
    table.plot.bar(ax=ax, rot=0, width=0.8, color=list(colours), yerr=errors, capsize=3,
                   error_kw={"elinewidth": 1, "ecolor": "0.2"})
    if errors is None:  # with error bars, the values would sit on them: the table beside the figure has them
        for container in ax.containers:
            labels = ["" if np.isnan(value) else f"{value:.2f}" for value in container.datavalues]
            ax.bar_label(container, labels=labels, fontsize=8, padding=2)
    if chance is not None:
        ax.axhline(chance, **CHANCE, label="chance")
    legend_outside(ax)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.set_xlabel(table.index.name or "")
    if ylim is not None:
        ax.set_ylim(*ylim)
    return ax


def _tint(hex_colour: str, strength: float = 0.22) -> tuple[float, float, float]:
    """A light tint of a colour (``strength`` of it over white), for a box that holds black text."""
    from matplotlib.colors import to_rgb

    return tuple(1 - strength * (1 - channel) for channel in to_rgb(hex_colour))


_SHARED_COLOUR = "#DDDDDD"  # what every task uses; Tol's pale grey, neither task's colour
_UNTRAINED_COLOUR = "white"  # no weights that training changes: the sentences, the tokenizer


def architecture_diagram(model, title: str = "Hard parameter sharing: one encoder, one head per task") -> Axes:
    """Boxes and arrows for a MultiTaskSentenceTransformer, drawn from the model itself: the tokenizer (no
    trained weights) in white with a dashed edge, the shared part (backbone, pooling, dropout) grey inside one
    frame, and each head in a tint of its task's colour. 960 px wide at 100 dpi; one unit is one inch, so the
    text keeps its size."""
    from matplotlib.patches import FancyBboxPatch

    encoder = model.encoder
    n_layers = encoder.backbone.config.num_hidden_layers
    n_encoder = sum(p.numel() for p in encoder.parameters())
    tasks = list(model.tasks.items())
    spread = 1.05 * (len(tasks) - 1) / 2  # heads from +spread to -spread
    top, bottom = max(spread, 0.55) + 0.75, -max(spread, 0.55) - 0.5
    fig, ax = plt.subplots(figsize=(9.6, top - bottom + 0.45))
    ax.set_xlim(0, 9.6)
    ax.set_ylim(bottom, top)
    ax.axis("off")

    def box(x: float, y: float, text: str, face, width: float, gid: str, edge="0.3", style="-") -> None:
        ax.add_patch(FancyBboxPatch((x - width / 2, y - 0.36), width, 0.72, boxstyle="round,pad=0.05",
                                    facecolor=face, edgecolor=edge, linestyle=style, linewidth=1.3, gid=gid))
        ax.text(x, y, text, ha="center", va="center", fontsize=10)

    def arrow(x0: float, y0: float, x1: float, y1: float) -> None:
        ax.annotate("", (x1, y1), (x0, y0), arrowprops={"arrowstyle": "->", "color": "0.3"})

    box(0.55, 0, "sentences", _UNTRAINED_COLOUR, 0.95, "sentences")
    box(2.0, 0, "tokenizer\nword pieces,\nno weights", _UNTRAINED_COLOUR, 1.2, "tokenizer", style="--")
    ax.add_patch(FancyBboxPatch((2.85, -0.5), 3.9, 1.3, boxstyle="round,pad=0.05", facecolor="none",
                                edgecolor="0.45", linewidth=1.0, gid="shared frame"))
    ax.text(4.8, 0.6, f"shared by every task: {n_encoder / 1e6:.1f} M parameters", ha="center", va="center",
            fontsize=10, color="0.2")
    box(3.9, 0, f"{type(encoder.backbone).__name__}\n{n_layers} layers", _SHARED_COLOUR, 1.8, "backbone")
    box(5.9, 0, f"{encoder.pooling} pooling\ndropout {model.dropout.p:g}", _SHARED_COLOUR, 1.4, "pooling")
    for x0, x1 in [(1.07, 1.35), (2.65, 2.95), (4.85, 5.15)]:
        arrow(x0, 0, x1, 0)
    ys = np.linspace(spread, -spread, len(tasks)) if len(tasks) > 1 else [0.0]
    for position, ((task, labels), y) in enumerate(zip(tasks, ys)):
        head = model.heads[task]
        n_head = sum(p.numel() for p in head.parameters())
        hue = TASK_COLOURS.get(task) or _OTHER_COLOURS[position % len(_OTHER_COLOURS)]
        arrow(6.7, 0, 7.55, y)
        box(8.55, y, f"{task} head\n{len(labels)} classes\n{n_head:,} parameters", _tint(hue), 1.95,
            f"head: {task}", edge=hue)
    ax.set_title(title)
    return ax


def _curves(history: pd.DataFrame, tasks: Mapping[str, Sequence[str]], metric: str, title: str) -> np.ndarray:
    """One panel per task (plus the total, for the loss): training (a line, each point a logging window),
    validation (dots, step 0 included when it was measured), and a uniform guess (dotted): ln C for a task's
    loss, 1 / C for its accuracy, and for the total loss the weighted sum of the tasks' ln C where the weights
    stayed fixed (``sum``, ``static``; a learned weighting has no fixed total to compare with)."""
    names = [*tasks, "total"] if metric == "loss" else list(tasks)
    fig, axes = plt.subplots(1, len(names), figsize=(3.1 * len(names) + 0.6, 3.2), squeeze=False, sharex=True)
    axes = axes[0]
    for ax, task in zip(axes, names):
        hue = TASK_COLOURS.get(task, "black")
        for split, style, options in (("train", "-", {"alpha": 0.6}), ("val", "o", {"markersize": 4})):
            rows = history[(history["split"] == split) & (history["task"] == task)]
            ax.plot(rows["step"], rows[metric], style, color=hue, label="training" if split == "train"
                    else "validation", **options)
        guess = _uniform_guess(history, tasks, task, metric)
        if guess is not None:
            ax.axhline(guess, **CHANCE, label="uniform guess")
        ax.set_title(task)
        ax.set_xlabel("step")
        ax.set_ylabel({"loss": "cross-entropy", "accuracy": "accuracy"}[metric] if task != "total"
                      else "weighted sum of task losses")
        if metric == "accuracy":
            ax.set_ylim(0, 1.02)
        else:
            ax.set_ylim(bottom=0)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.08, 1, 1))  # room for the legend below the panels
    return axes


def _uniform_guess(history: pd.DataFrame, tasks: Mapping[str, Sequence[str]], task: str, metric: str
                   ) -> float | None:
    if metric == "accuracy":
        return 1 / len(tasks[task])
    if task != "total":
        return math.log(len(tasks[task]))
    weights = history[history["task"].isin(list(tasks))].groupby("task")["weight"]
    if weights.nunique().max() > 1:  # learned weights: no fixed uniform-guess total
        return None
    fixed = weights.first().fillna(1.0)
    return sum(fixed.get(name, 1.0) * math.log(len(labels)) for name, labels in tasks.items())


def loss_curves(history: pd.DataFrame, tasks: Mapping[str, Sequence[str]],
                title: str = "Loss during training") -> np.ndarray:
    """One panel per task plus the total: training and validation loss, and a uniform guess (see ``_curves``)."""
    return _curves(history, tasks, "loss", title)


def accuracy_curves(history: pd.DataFrame, tasks: Mapping[str, Sequence[str]],
                    title: str = "Accuracy during training") -> np.ndarray:
    """One panel per task: training and validation accuracy, and chance, 1 / C (see ``_curves``)."""
    return _curves(history, tasks, "accuracy", title)


def embedding_maps(maps: dict[str, np.ndarray], labels: pd.DataFrame, tasks: Mapping[str, Sequence[str]],
                   title: str) -> np.ndarray:
    """A grid of 2-D scatter plots: one row per embedding space (``maps``: name -> (n, 2) points), one
    column per task of ``tasks`` (rows of ``labels`` without that label are left out of that column). The panels
    of a row share their axis ranges (one space, coloured two ways); rows need not (each space has its own PCA
    scale). About 1,000 px wide for two tasks."""
    fig, axes = plt.subplots(len(maps), len(tasks), figsize=(4.3 * len(tasks) + 1.2, 3.6 * len(maps)), squeeze=False,
                             sharex="row", sharey="row")
    for row, (name, points) in enumerate(maps.items()):
        for column, (task, names) in enumerate(tasks.items()):
            ax = axes[row, column]
            for position, label in enumerate(names):
                chosen = (labels[task] == label).fillna(False).to_numpy(dtype=bool)
                ax.scatter(points[chosen, 0], points[chosen, 1], s=8, alpha=0.6, label=label,
                           color=colour(label, position))
            ax.set_title(f"{name}, coloured by {task}")
            ax.set_xlabel("first principal component")
            ax.set_ylabel("second principal component")
            if row == 0:
                legend_outside(ax, markerscale=2, fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return axes

