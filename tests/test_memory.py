"""A kernel's peak memory, read from /proc, and the check that fails a notebook whose kernel passes the limit:
notebooks/conftest.py, run here by nbval on a small notebook that takes 0.4 GiB and frees it again."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from helpers import memory
from helpers.memory import LIMIT_VARIABLE, NOTEBOOK_LIMIT_GIB, notebook_limit_gib, peak_resident_gib

ROOT = Path(__file__).resolve().parents[1]
linux_only = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")


@linux_only
def test_the_peak_keeps_memory_that_was_taken_and_freed_and_ends_with_the_process():
    taker = subprocess.Popen([sys.executable, "-c", "import sys; b = b'x' * (300 * 2**20); del b; print(flush=True); "
                              "sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    taker.stdout.readline()
    peak = peak_resident_gib(taker.pid)
    taker.communicate("")
    assert 0.29 < peak < 0.5
    with pytest.raises(ProcessLookupError, match="while it is still running"):
        peak_resident_gib(taker.pid)


def test_without_proc_there_is_no_peak_to_read(monkeypatch, tmp_path):
    monkeypatch.setattr(memory, "PROC", tmp_path / "proc")
    assert peak_resident_gib(os.getpid()) is None


def test_the_limit_is_the_constant_unless_the_variable_sets_a_positive_number(monkeypatch):
    monkeypatch.delenv(LIMIT_VARIABLE, raising=False)
    assert notebook_limit_gib() == NOTEBOOK_LIMIT_GIB == 1.5
    monkeypatch.setenv(LIMIT_VARIABLE, "0.8")
    assert notebook_limit_gib() == 0.8
    for bad in ("abc", "-1", "0", "nan"):
        monkeypatch.setenv(LIMIT_VARIABLE, bad)
        with pytest.raises(ValueError, match=f"{LIMIT_VARIABLE}='{bad}' is not a positive number"):
            notebook_limit_gib()


@pytest.fixture(scope="module")
def big_notebook_folder(tmp_path_factory) -> Path:
    """A folder like notebooks/: its conftest.py, and big.ipynb, which takes 0.4 GiB, frees it, then runs on."""
    folder = tmp_path_factory.mktemp("project") / "notebooks"
    folder.mkdir()
    shutil.copy(ROOT / "notebooks" / "conftest.py", folder)
    notebook = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    notebook.cells = [nbformat.v4.new_code_cell("block = b'x' * (400 * 2**20)"),
                      nbformat.v4.new_code_cell("del block"), nbformat.v4.new_code_cell("print('done')")]
    nbformat.write(notebook, folder / "big.ipynb")
    return folder


def nbval(folder: Path, limit_gib: float) -> subprocess.CompletedProcess:
    env = {**os.environ, LIMIT_VARIABLE: str(limit_gib),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--nbval-lax",
                           "--nbval-current-env", str(folder)], cwd=folder.parent, env=env, capture_output=True,
                          text=True, timeout=300)


@linux_only
def test_a_notebook_whose_kernel_passes_the_limit_fails_with_its_name_its_peak_and_the_limit(big_notebook_folder):
    run = nbval(big_notebook_folder, limit_gib=0.3)
    assert run.returncode == 1, run.stdout
    assert "3 passed, 1 error" in run.stdout
    assert "big.ipynb: its kernel peaked at 0.4" in run.stdout and "above the limit of 0.30 GiB" in run.stdout


@linux_only
def test_a_notebook_under_the_limit_passes_and_the_summary_gives_its_peak(big_notebook_folder):
    run = nbval(big_notebook_folder, limit_gib=1.0)
    assert run.returncode == 0, run.stdout
    assert "notebook memory: each kernel's peak, limit 1.00 GiB" in run.stdout
    assert "big.ipynb: 0.4" in run.stdout
    assert f"measured on {memory.machine_description()}" in run.stdout  # the machine beside its peaks


def test_the_machine_description_names_the_cpu_its_core_count_and_the_precision(monkeypatch, tmp_path):
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: fpu\n")
    monkeypatch.setattr(memory, "PROC", tmp_path)
    monkeypatch.setattr(os, "cpu_count", lambda: 7)
    monkeypatch.setenv("HELPERS_PRECISION", "fp32")
    assert memory.machine_description() == "Test CPU 9000, 7 CPUs, HELPERS_PRECISION=fp32"
    monkeypatch.delenv("HELPERS_PRECISION")
    (tmp_path / "cpuinfo").unlink()
    assert memory.machine_description() == "an unnamed CPU, 7 CPUs, HELPERS_PRECISION=auto"


@pytest.mark.skipif(memory.GLIBC is None, reason="malloc_trim is glibc's")
def test_freed_memory_scattered_through_the_heap_goes_back_to_the_system():
    """What training steps leave: many blocks freed around a few kept ones, which glibc alone would keep."""
    script = ("import re, torch\n"
              "from helpers.memory import return_freed_memory\n"
              "def rss():\n"
              "    status = open('/proc/self/status').read()\n"
              "    return int(re.search(r'^VmRSS:\\s+(\\d+)', status, re.M).group(1)) / 2**10\n"
              "blocks = [torch.ones(16_000) for _ in range(4000)]  # 64 KB each, 250 MB from the heap\n"
              "kept = blocks[::100]\n"
              "del blocks\n"
              "before = rss()\n"
              "return_freed_memory()\n"
              "print(before - rss())\n")
    freed_mb = float(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                                    cwd=ROOT).stdout)
    assert freed_mb > 150
