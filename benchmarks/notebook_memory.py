"""Each notebook's peak memory and time, as a reader's kernel takes them: run like nbval runs it (nbclient, a fresh
kernel of the notebook's own kind, code cells top to bottom, the notebook's folder as working directory).

    python benchmarks/notebook_memory.py [NOTEBOOK ...] [--one-core] [--csv FILE] [--top 3]

Prints per notebook the kernel's peak resident memory (VmHWM, GiB), its wall time (kernel start included) and
torch's thread count, then the cells that raised the peak most and the slowest cells. ``--csv`` writes every
cell: its time, the peak after it and what it added. ``--one-core`` pins the kernel to one CPU before it starts,
as a Binder session has about one core; torch then takes one thread, and the script stops if it does not. The
notebooks are read, never written. Set ``HELPERS_PRECISION=fp32`` for the float32 figures (``make memory``).
"""

from __future__ import annotations

import argparse
import csv
import functools
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from helpers.memory import notebook_limit_gib, peak_resident_gib

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
THREADS_PROBE = "import torch; print(torch.get_num_threads())"


@dataclass
class Cell:
    notebook: str
    number: int  # the execution count, as the saved notebook's prompt shows it: In [number]
    first_line: str
    seconds: float
    peak_before: float
    peak_after: float

    @property
    def added(self) -> float:
        return self.peak_after - self.peak_before


@dataclass
class Run:
    notebook: str
    seconds: float
    start_peak: float  # the kernel's peak before the first cell: Python, ipykernel
    torch_threads: int
    cells: list[Cell]

    @property
    def peak(self) -> float:
        return max([self.start_peak] + [cell.peak_after for cell in self.cells])


def measure(path: Path, one_core: bool) -> Run:
    """Execute ``path`` in a fresh kernel, reading the kernel's peak memory around every code cell."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=1800, kernel_name=notebook.metadata.kernelspec.name,
                            resources={"metadata": {"path": str(path.parent)}})
    # Like nbval: the kernel's own messages (stderr) go nowhere. A CPU set given before the kernel starts holds
    # for every thread it will make, torch's pool included.
    launch = {"stderr": subprocess.DEVNULL}
    if one_core:
        launch["preexec_fn"] = functools.partial(os.sched_setaffinity, 0, {min(os.sched_getaffinity(0))})
    started = time.perf_counter()
    cells = []
    with client.setup_kernel(**launch):
        pid = client.km.provisioner.pid
        start_peak = peak_of(pid)
        code = [(index, cell) for index, cell in enumerate(notebook.cells) if cell.cell_type == "code"]
        for number, (index, cell) in enumerate(code, start=1):
            before, clock = peak_of(pid), time.perf_counter()
            client.execute_cell(cell, index, execution_count=number)
            first_line = next((line for line in cell.source.splitlines() if line.strip() and "NBVAL_" not in line), "")
            cells.append(Cell(path.name, number, first_line, time.perf_counter() - clock, before, peak_of(pid)))
        seconds = time.perf_counter() - started
        probe = nbformat.v4.new_code_cell(THREADS_PROBE)  # run after the notebook, in its kernel; never saved
        notebook.cells.append(probe)
        client.execute_cell(probe, len(notebook.cells) - 1)
        threads = int(probe.outputs[0]["text"])
    return Run(path.name, seconds, start_peak, threads, cells)


def peak_of(pid: int) -> float:
    peak = peak_resident_gib(pid)
    if peak is None:
        sys.exit("no /proc on this system: the kernel's peak memory is read from /proc/<pid>/status (Linux)")
    return peak


def report(runs: list[Run], top: int, one_core: bool) -> None:
    limit = notebook_limit_gib()
    print(f"{'notebook':34} {'peak GiB':>8} {'seconds':>8} {'torch threads':>13}"
          f"   (limit {limit:.2f} GiB{', one core' if one_core else ''})")
    for run in runs:
        over = "  over the limit" if run.peak > limit else ""
        print(f"{run.notebook:34} {run.peak:8.2f} {run.seconds:8.1f} {run.torch_threads:13d}{over}")
    for run in runs:
        print(f"\n{run.notebook}: kernel started at {run.start_peak:.2f} GiB; cells that raised the peak most")
        for cell in sorted(run.cells, key=lambda cell: -cell.added)[:top]:
            print(f"  In [{cell.number:2d}] +{cell.added:.2f} GiB to {cell.peak_after:.2f}  {cell.first_line[:80]}")
        print("  slowest cells")
        for cell in sorted(run.cells, key=lambda cell: -cell.seconds)[:top]:
            print(f"  In [{cell.number:2d}] {cell.seconds:6.1f} s  {cell.first_line[:80]}")


def write_csv(runs: list[Run], path: Path) -> None:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["notebook", "cell", "seconds", "peak_before_gib", "peak_after_gib", "added_gib",
                         "first_line"])
        for cell in (cell for run in runs for cell in run.cells):
            writer.writerow([cell.notebook, cell.number, f"{cell.seconds:.2f}", f"{cell.peak_before:.3f}",
                             f"{cell.peak_after:.3f}", f"{cell.added:.3f}", cell.first_line])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebook in notebooks/")
    parser.add_argument("--one-core", action="store_true", help="pin the kernel to one CPU, as on Binder")
    parser.add_argument("--csv", type=Path, help="also write every cell's time and memory to this file")
    parser.add_argument("--top", type=int, default=3, help="cells listed per notebook (default 3)")
    args = parser.parse_args()
    paths = [path.resolve() for path in args.notebooks] or sorted(NOTEBOOKS.glob("*.ipynb"))
    runs = []
    for path in paths:
        print(f"running {path.name} ...", file=sys.stderr, flush=True)
        runs.append(measure(path, args.one_core))
        if args.one_core and runs[-1].torch_threads != 1:
            sys.exit(f"{path.name}: torch took {runs[-1].torch_threads} threads on one pinned core, not 1")
    report(runs, args.top, args.one_core)
    if args.csv:
        write_csv(runs, args.csv)


if __name__ == "__main__":
    main()
