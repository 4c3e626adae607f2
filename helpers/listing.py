"""Show the library's own code and prose tables on the page so that they read the same wherever a notebook is
opened: JupyterLab (trusted or not), Colab, GitHub, nbviewer, nbconvert's HTML. Used by the notebooks.

A listing is saved three ways, and each viewer takes the richest it can show: highlighted HTML with inline styles
(a class-based stylesheet is dropped by an untrusted notebook and by GitHub), Markdown, and plain text. Its ``<pre>``
keeps the code monospace and never wraps a line; a longer line scrolls instead, so listed code is held to ``WIDTH``
characters, which JupyterLab shows whole. A table of sentences is Markdown with left-aligned columns:
pandas' styled HTML loses its alignment where ``<style>`` is dropped, and sentences then read right-aligned.
"""

from __future__ import annotations

import inspect
import sys
import textwrap
from collections.abc import Mapping

import numpy as np
import pandas as pd
from IPython.display import Markdown
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

WIDTH = 100  # characters per listed line; JupyterLab wraps an output line beyond about 105, mid-word
# Inline, so no stylesheet wins: nbconvert's HTML gives an output's <pre> the page's proportional font, and
# JupyterLab wraps it anywhere, mid-word included. A line longer than the page scrolls instead.
PRE_STYLE = "font-family: Menlo, Consolas, 'DejaVu Sans Mono', monospace; white-space: pre; overflow-x: auto"


class Listing(Markdown):
    """Python source as a Markdown code block (``data``), with highlighted HTML and plain text beside it."""

    def __init__(self, code: str):
        self.code = code
        super().__init__(f"```python\n{code}\n```")

    def _repr_html_(self) -> str:
        return highlight(self.code, PythonLexer(), HtmlFormatter(noclasses=True, prestyles=PRE_STYLE))

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        printer.text(self.code)


def too_wide(item: object, width: int = WIDTH) -> list[int]:
    """The numbers, in its file, of ``item``'s source lines longer than ``width`` once dedented."""
    lines, start = inspect.getsourcelines(item)
    first = start or 1  # a module's source starts at line 1, where getsourcelines says 0
    dedented = textwrap.dedent("".join(lines)).splitlines()
    return [first + offset for offset, line in enumerate(dedented) if len(line) > width]


def source_listing(*objects: object) -> Listing:
    """The source of each of ``objects`` (functions, methods, classes), dedented, in one Python listing.

    Lines longer than ``WIDTH`` are reported on standard error by module and line number: shorten them there.
    """
    for item in objects:
        wide = too_wide(item)
        if wide:
            print(f"{item.__module__}.{item.__qualname__}: lines {', '.join(map(str, wide))} of its module are "
                  f"longer than {WIDTH} characters and scroll in this listing; shorten them", file=sys.stderr)
    return Listing("\n\n".join(textwrap.dedent(inspect.getsource(item)).rstrip() for item in objects))


def markdown_table(frame: pd.DataFrame, formats: Mapping[str, str] | None = None, float_format: str = "{:.2f}",
                   index: bool = True) -> Markdown:
    """``frame`` as a Markdown table with every column left-aligned, for tables whose cells are sentences.

    ``formats`` maps a column to a format string (``{"cosine": "{:.3f}"}``); other floats take ``float_format``.
    The index is the first column unless ``index=False``. A ``|`` in a cell is escaped, a line break becomes a space.
    """
    formats = formats or {}
    table = frame.reset_index() if index else frame

    def cell(column: str, value: object) -> str:
        if column in formats:
            text = formats[column].format(value)
        elif isinstance(value, float | np.floating):
            text = float_format.format(value)
        else:
            text = str(value)
        return " ".join(text.split()).replace("|", r"\|")

    header = [cell("", str(column)) for column in table.columns]
    rows = [[cell(column, value) for column, value in zip(table.columns, row)] for row in table.itertuples(False)]
    lines = [header, [":---"] * len(header), *rows]
    return Markdown("\n".join("| " + " | ".join(line) + " |" for line in lines))
