"""Listings and prose tables read the same in every viewer: a listing's HTML keeps its own styles and never wraps,
every function a notebook lists fits the width a page shows unwrapped, and a table of sentences is left-aligned
Markdown."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from IPython.core.formatters import DisplayFormatter
from IPython.core.inputtransformer2 import TransformerManager

from helpers.listing import PRE_STYLE, WIDTH, markdown_table, source_listing, too_wide

ROOT = Path(__file__).resolve().parents[1]


def listed_in_notebooks() -> list[tuple[str, str, object]]:
    """(notebook, expression, object) for each argument of each ``source_listing(...)`` call in a notebook's code.

    The expressions are evaluated in a namespace holding the notebook's top-level imports, and nothing else.
    """
    listed = []
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        namespace: dict = {}
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "code":
                continue
            tree = ast.parse(TransformerManager().transform_cell(cell.source))  # `!` and `%` lines made Python
            imports = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
            exec(compile(ast.Module(body=imports, type_ignores=[]), str(path), "exec"), namespace)
            for call in ast.walk(tree):
                if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "source_listing":
                    listed += [(path.stem, ast.unparse(arg), eval(ast.unparse(arg), namespace)) for arg in call.args]
    return listed


LISTED = listed_in_notebooks()


def test_the_notebooks_list_library_code():
    listed = {expression for _, expression, _ in LISTED}
    assert listed >= {"pool", "MultiTaskSentenceTransformer.forward", "task_losses"}


@pytest.mark.parametrize(("notebook", "expression", "item"), LISTED, ids=[f"{n}:{e}" for n, e, _ in LISTED])
def test_every_listed_function_fits_the_width_a_page_shows_unwrapped(notebook, expression, item):
    wide = too_wide(item)
    source = Path(inspect.getsourcefile(item)).relative_to(ROOT)
    assert not wide, f"{notebook} lists {expression}: lines {wide} of {source} are longer than {WIDTH} characters"


class Example:
    def method(self):
        return "a line that is long enough to pass the width of a listing once the method is dedented, by far"


def test_too_wide_gives_the_file_line_numbers_of_the_long_lines_after_dedenting():
    start = inspect.getsourcelines(Example.method)[1]
    dedented = len(inspect.getsourcelines(Example.method)[0][1].strip()) + 4  # the return line, once dedented
    assert too_wide(Example.method) == [start + 1]
    assert too_wide(Example.method, width=dedented) == []
    assert too_wide(Example.method, width=dedented - 1) == [start + 1]


def test_a_listing_reports_its_long_lines_on_stderr_by_module_and_line(capsys):
    source_listing(Example.method)
    line = inspect.getsourcelines(Example.method)[1] + 1
    assert capsys.readouterr().err == (f"{__name__}.Example.method: lines {line} of its module are longer than "
                                       f"{WIDTH} characters and scroll in this listing; shorten them\n")
    source_listing(too_wide)
    assert capsys.readouterr().err == ""


def test_a_listing_is_styled_html_with_markdown_and_plain_text_beside_it():
    data, _ = DisplayFormatter().format(source_listing(too_wide))
    code = inspect.getsource(too_wide).rstrip()
    assert data["text/plain"] == code
    assert data["text/markdown"] == f"```python\n{code}\n```"
    html = data["text/html"]
    assert f'<pre style="{PRE_STYLE}' in html  # monospace, never wrapped, whatever the page's stylesheet says
    assert 'style="color: #008000; font-weight: bold">def</span>' in html  # colours inline, no class to look up
    assert "class=" not in html.replace('<div class="highlight"', "")


def test_a_prose_table_is_markdown_with_every_column_left_aligned_and_pipes_escaped():
    frame = pd.DataFrame({"query": ["cats | dogs", "a\nb"], "cosine": np.float32([0.123456, 0.5]), "n": [3, 4]},
                         index=pd.Index(["x", "y"], name="pair"))
    assert markdown_table(frame).data.splitlines() == [
        "| pair | query | cosine | n |",
        "| :--- | :--- | :--- | :--- |",
        r"| x | cats \| dogs | 0.12 | 3 |",
        "| y | a b | 0.50 | 4 |",
    ]
    table = markdown_table(frame, formats={"cosine": "{:.3f}", "n": "{:,}"}, index=False).data.splitlines()
    assert table[0] == "| query | cosine | n |" and table[2] == r"| cats \| dogs | 0.123 | 3 |"
