"""Clear the saved outputs of the cells tagged ``answer`` or ``widget``, keeping their execution counts: the last
step of ``make run``, after the notebooks are executed.

An exercise's answer cell runs under nbval like any other, but a static view of a saved notebook (GitHub, nbviewer,
nbconvert's HTML) shows every output in full: saved without its output, the answer stays hidden until the reader
runs it. A widget (the text box) can only be saved as its repr, ``VBox(children=(Text(...``; its saved state goes
too, as nothing shows it any more. nbconvert's TagRemovePreprocessor would also reset the execution counts.

    python scripts/clear_tagged_outputs.py NOTEBOOK ...
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

TAGS = {"answer", "widget"}


def clear_tagged_outputs(notebook: nbformat.NotebookNode) -> bool:
    """Empty the outputs of the code cells tagged with one of ``TAGS``; True if the notebook changed."""
    changed = False
    for cell in notebook.cells:
        if cell.cell_type == "code" and TAGS & set(cell.metadata.get("tags", [])) and cell.outputs:
            cell.outputs = []
            changed = True
    views = any("application/vnd.jupyter.widget-view+json" in output.get("data", {})
                for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs)
    if "widgets" in notebook.metadata and not views:
        del notebook.metadata["widgets"]
        changed = True
    return changed


def main(paths: list[str]) -> None:
    for path in map(Path, paths):
        notebook = nbformat.read(path, as_version=4)
        if clear_tagged_outputs(notebook):
            nbformat.write(notebook, path)


if __name__ == "__main__":
    main(sys.argv[1:])
