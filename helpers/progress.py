"""Progress bars that read right everywhere: text bars on standard output.

A notebook widget bar is saved as a widget, which JupyterLab hides in an untrusted notebook and GitHub or
nbconvert cannot draw: a finished run then shows "0%" or nothing. A text bar rewrites its line with carriage
returns, and what stays in the saved output is its final state: "100%| 162/162 [00:22]". It reads the same in
a terminal, JupyterLab, Colab and a static page. Used by every bar of the project: encoding, training, the
commands and the notebooks' own loops.

A bar's line is 100 characters, what a page shows unwrapped; the description takes what the counts leave, so a
long one is cut to ``MAX_DESCRIPTION`` characters with an ellipsis rather than squeezing the bar to nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from tqdm import tqdm

NCOLS = 100
MAX_DESCRIPTION = 30  # leaves the bar about 20 characters beside counts, times, rate and "epoch 1/1"


def short_description(desc: str, limit: int = MAX_DESCRIPTION) -> str:
    """``desc`` itself, or its first ``limit - 1`` characters and an ellipsis."""
    return desc if len(desc) <= limit else desc[:limit - 1].rstrip() + "…"


def progress_bar(iterable: Iterable | None = None, **options: Any) -> tqdm:
    """``tqdm`` as a text bar on standard output (``options``: tqdm's, e.g. ``total``, ``desc``, ``disable``)."""
    if options.get("desc"):
        options["desc"] = short_description(options["desc"])
    return tqdm(iterable, file=sys.stdout, **{"ncols": NCOLS, "mininterval": 0.5, **options})
