"""Every notebook opens with the same Colab set-up cell; it stops early while REPO_URL is a placeholder."""

import sys
from pathlib import Path

import nbformat
import pytest
import torch
from IPython.core.inputtransformer2 import TransformerManager

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
PLACEHOLDER = "https://github.com/YOUR-ACCOUNT/YOUR-COPY-OF-THIS-PROJECT"


def colab_cell(path: Path = NOTEBOOKS[0]) -> str:
    """The notebook's first code cell."""
    notebook = nbformat.read(path, as_version=4)
    return next(cell.source for cell in notebook.cells if cell.cell_type == "code")


def run_on_fake_colab(source: str, monkeypatch) -> tuple[list[str], dict]:
    """Run the cell as if on Colab; return the shell commands and magics it issued instead of running them, and
    the variables it set (IPython fills a command's `{NAME}` from them)."""
    issued = []

    class FakeShell:
        def system(self, command):
            issued.append(command)

        def run_line_magic(self, name, line):
            issued.append(f"%{name} {line}")

    monkeypatch.setitem(sys.modules, "google.colab", object())
    monkeypatch.setattr(sys, "path", list(sys.path))
    code = TransformerManager().transform_cell(source)  # `!` and `%` lines become get_ipython() calls
    namespace = {"get_ipython": FakeShell}
    exec(code, namespace)
    return issued, namespace


def test_all_notebooks_share_one_colab_cell():
    assert len(NOTEBOOKS) == 4
    assert len({colab_cell(path) for path in NOTEBOOKS}) == 1


def test_placeholder_repo_url_stops_before_any_command(monkeypatch):
    with pytest.raises(RuntimeError, match="Set REPO_URL in this cell"):
        run_on_fake_colab(colab_cell(), monkeypatch)


def test_a_real_repo_url_is_cloned_and_installed_from_inside_the_clone(monkeypatch):
    """From inside: requirements.txt ends with `-e .`, which pip resolves against the working directory.
    The torch already installed (Colab's CUDA build) is pinned, so that pip keeps it."""
    source = colab_cell().replace(PLACEHOLDER, "https://github.com/someone/copy")
    (clone, cd), namespace = run_on_fake_colab(source, monkeypatch)
    assert clone == ("git clone --quiet {REPO_URL} project && cd project"
                     " && pip install --quiet -r requirements.txt {TORCH}")
    assert namespace["TORCH"] == f"torch=={torch.__version__}"
    assert cd == "%cd project/notebooks" and sys.path[0] == ".."
