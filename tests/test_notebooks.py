"""The committed notebooks read right wherever they are opened: a static view (GitHub, nbviewer, nbconvert's HTML)
shows every saved output, so what is saved is what a reader sees before running anything."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
HIDDEN_OUTPUT_TAGS = {"answer", "widget"}  # the tags whose outputs `make run` clears (scripts/clear_tagged_outputs.py)
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
MACHINE_PATH = re.compile(r"/home/|/Users/|[A-Za-z]:\\+Users|/tmp/|site-packages|/work/|/root/")
MAX_BYTES = 3 * 2**20


def code_cells(path: Path) -> list[nbformat.NotebookNode]:
    return [cell for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code"]


def tags(cell: nbformat.NotebookNode) -> set[str]:
    return set(cell.metadata.get("tags", []))


def first_line(cell: nbformat.NotebookNode) -> str:
    return cell.source.splitlines()[0] if cell.source else ""


def output_texts(cell: nbformat.NotebookNode) -> list[str]:
    """What a reader can read in a cell's outputs: streams, tracebacks and text data (images left out)."""
    texts = []
    for output in cell.get("outputs", []):
        texts += [output.get("text", ""), "\n".join(output.get("traceback", []))]
        texts += [str(value) for kind, value in output.get("data", {}).items() if not kind.startswith("image/")]
    return texts


notebooks = pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])


@notebooks
def test_the_cells_with_hidden_source_are_the_cells_tagged_answer(path):
    hidden = [first_line(cell) for cell in code_cells(path) if cell.metadata.get("jupyter", {}).get("source_hidden")]
    tagged = [first_line(cell) for cell in code_cells(path) if "answer" in tags(cell)]
    assert hidden, "every notebook ends with exercises whose answers are hidden"
    assert hidden == tagged, "tag each answer cell (source hidden) `answer`, and no other cell"


@notebooks
def test_answer_and_widget_cells_are_saved_without_outputs(path):
    shown = [first_line(cell) for cell in code_cells(path) if tags(cell) & HIDDEN_OUTPUT_TAGS and cell.outputs]
    assert not shown, "run `make run`, or `python scripts/clear_tagged_outputs.py` on the notebook"


@notebooks
def test_no_widget_is_saved_as_its_repr(path):
    widgets = [first_line(cell) for cell in code_cells(path)
               if any(WIDGET_VIEW in output.get("data", {}) for output in cell.outputs)]
    assert not widgets, "tag the cells that display a widget `widget`, then run `make run`"


@notebooks
def test_the_code_cells_ran_once_each_top_to_bottom(path):
    counts = [cell.execution_count for cell in code_cells(path)]
    assert counts == list(range(1, len(counts) + 1)), "execute the notebook top to bottom in a fresh kernel"


@notebooks
def test_no_cell_saved_an_error(path):
    errors = [first_line(cell) for cell in code_cells(path) if any(o.output_type == "error" for o in cell.outputs)]
    assert not errors


@notebooks
def test_no_output_shows_a_path_of_the_machine_that_ran_it(path):
    found = [(first_line(cell), match.group()) for cell in code_cells(path)
             for text in output_texts(cell) for match in MACHINE_PATH.finditer(text)]
    assert not found, "print paths relative to the notebooks folder, or only file names"


@notebooks
def test_each_notebook_is_small_enough_for_every_viewer(path):
    assert path.stat().st_size < MAX_BYTES, "smaller figures (dpi) or fewer of them"


def test_clearing_keeps_execution_counts_and_every_untagged_output(tmp_path):
    notebook = nbformat.v4.new_notebook(metadata={"widgets": {"application/vnd.jupyter.widget-state+json": {}}})
    printed = nbformat.v4.new_output("stream", text="42\n")
    view = nbformat.v4.new_output("display_data", data={WIDGET_VIEW: {"model_id": "m"}, "text/plain": "VBox()"})
    notebook.cells = [nbformat.v4.new_code_cell("print(42)", execution_count=1, outputs=[printed]),
                      nbformat.v4.new_code_cell("answer", execution_count=2, outputs=[printed],
                                                metadata={"tags": ["answer"]}),
                      nbformat.v4.new_code_cell("box", execution_count=3, outputs=[view],
                                                metadata={"tags": ["widget"]}),
                      nbformat.v4.new_markdown_cell("text")]
    nbformat.write(notebook, tmp_path / "n.ipynb")
    subprocess.run([sys.executable, ROOT / "scripts" / "clear_tagged_outputs.py", tmp_path / "n.ipynb"], check=True)
    cleared = nbformat.read(tmp_path / "n.ipynb", as_version=4)
    assert [cell.get("outputs") for cell in cleared.cells] == [[printed], [], [], None]
    assert [cell.get("execution_count") for cell in cleared.cells] == [1, 2, 3, None]
    assert "widgets" not in cleared.metadata  # no view left to show the widget's state
