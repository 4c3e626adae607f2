"""nbval's run of the notebooks is also their memory check: at the end of each notebook, before nbval stops the
kernel, its peak resident memory is read from /proc, and a notebook above the limit fails (``helpers.memory``:
Binder restarts a kernel beyond 2 GiB). The peaks are listed in pytest's summary. Nothing is run twice."""

from __future__ import annotations

import pytest
from nbval.plugin import IPyNbFile

from helpers.memory import LIMIT_VARIABLE, machine_description, notebook_limit_gib, peak_resident_gib

PEAKS: dict[str, float | None] = {}  # notebook -> its kernel's peak in GiB; None where /proc is absent


def pytest_configure(config: pytest.Config) -> None:
    notebook_limit_gib()  # a bad NOTEBOOK_MEMORY_LIMIT_GIB stops the run now, not after the first notebook


def ends_a_notebook(item: pytest.Item, nextitem: pytest.Item | None) -> bool:
    """Whether ``item`` is a notebook's last cell, whose teardown stops the notebook's kernel."""
    notebook = item.parent
    return isinstance(notebook, IPyNbFile) and (nextitem is None or nextitem.parent is not notebook)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None):
    if not ends_a_notebook(item, nextitem) or item.parent.kernel is None or not item.parent.kernel.is_alive():
        return (yield)
    name = item.parent.path.name
    PEAKS[name] = peak = peak_resident_gib(item.parent.kernel.km.provisioner.pid)
    result = yield  # nbval stops the kernel
    limit = notebook_limit_gib()
    if peak is not None and peak > limit:
        pytest.fail(f"{name}: its kernel peaked at {peak:.2f} GiB of resident memory, above the limit of "
                    f"{limit:.2f} GiB (Binder restarts a kernel at 2 GiB). `python benchmarks/notebook_memory.py "
                    f"notebooks/{name}` lists the cells that raise the peak most; the limit is NOTEBOOK_LIMIT_GIB "
                    f"in helpers/memory.py, {LIMIT_VARIABLE} overrides it for one run.", pytrace=False)
    return result


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not PEAKS:
        return
    terminalreporter.section(f"notebook memory: each kernel's peak, limit {notebook_limit_gib():.2f} GiB")
    terminalreporter.write_line(f"measured on {machine_description()}")
    for name, peak in PEAKS.items():
        shown = "skipped: no /proc on this system to read it from" if peak is None else f"{peak:.2f} GiB"
        terminalreporter.write_line(f"{name}: {shown}")
