"""Progress bars that read right everywhere: text bars on standard output.

A notebook widget bar is saved as a widget, which JupyterLab hides in an untrusted notebook and GitHub or
nbconvert cannot draw: a finished run then shows "0%" or nothing. A text bar rewrites its line with carriage
returns, and what stays in the saved output is its final state: "100%| 162/162 [00:22]". It reads the same in
a terminal, JupyterLab, Colab and a static page. Used by every bar of the project: encoding, training, the
commands and the notebooks' own loops.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from tqdm import tqdm


def progress_bar(iterable: Iterable | None = None, **options: Any) -> tqdm:
    """``tqdm`` as a text bar on standard output (``options``: tqdm's, e.g. ``total``, ``desc``, ``disable``)."""
    return tqdm(iterable, file=sys.stdout, **{"ncols": 100, "mininterval": 0.5, **options})
