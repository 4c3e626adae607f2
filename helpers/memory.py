"""How much memory a notebook's kernel takes, read from Linux's ``/proc``: a reader's Binder session restarts the
kernel beyond 2 GiB, so the notebooks are held to ``NOTEBOOK_LIMIT_GIB``; and how freed memory goes back.

The peak is the kernel process's high-water mark of resident memory (``VmHWM``): unlike the current resident size
it also counts what a cell allocated and freed again, which is what a memory limit stops. Used by
``notebooks/conftest.py`` (the check in ``make test``) and ``benchmarks/notebook_memory.py`` (per cell).
"""

from __future__ import annotations

import ctypes
import os
import re
from pathlib import Path

from .precision import ENVIRONMENT_VARIABLE

PROC = Path("/proc")
NOTEBOOK_LIMIT_GIB = 1.5  # Binder guarantees 1 GiB and stops at 2 GiB; this keeps room below the 2
LIMIT_VARIABLE = "NOTEBOOK_MEMORY_LIMIT_GIB"  # overrides the limit for one run, e.g. to see the check fail


def peak_resident_gib(pid: int) -> float | None:
    """The most resident memory process ``pid`` has held so far, in GiB; None on a system without ``/proc``.

    A process that has ended raises ProcessLookupError: its peak is gone with it, so read it before it stops.
    """
    if not (PROC / "self" / "status").exists():
        return None
    try:
        status = (PROC / str(pid) / "status").read_text()
    except FileNotFoundError:
        raise ProcessLookupError(f"no process {pid}: read its peak memory while it is still running") from None
    kib = re.search(r"^VmHWM:\s+(\d+) kB$", status, re.MULTILINE)
    if kib is None:
        raise ValueError(f"{PROC / str(pid) / 'status'} has no VmHWM line: is this a Linux /proc?")
    return int(kib.group(1)) / 2**20


def machine_description() -> str:
    """The CPU, its core count and the precision the kernels ran in: the same notebook peaks about a tenth
    higher on some machines than on others, so a peak is read beside the machine that gave it."""
    model = "an unnamed CPU"
    cpuinfo = PROC / "cpuinfo"
    if cpuinfo.exists():
        named = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        model = named.group(1).strip() if named else model
    return f"{model}, {os.cpu_count()} CPUs, {ENVIRONMENT_VARIABLE}={os.environ.get(ENVIRONMENT_VARIABLE, 'auto')}"


def notebook_limit_gib() -> float:
    """The memory limit of a notebook's kernel in GiB: ``NOTEBOOK_LIMIT_GIB``, or ``$NOTEBOOK_MEMORY_LIMIT_GIB``."""
    text = os.environ.get(LIMIT_VARIABLE)
    if text is None:
        return NOTEBOOK_LIMIT_GIB
    try:
        limit = float(text)
    except ValueError:
        limit = 0.0
    if not limit > 0:
        raise ValueError(f"{LIMIT_VARIABLE}={text!r} is not a positive number of GiB: set it to e.g. 1.5, or unset "
                         f"it for the default of {NOTEBOOK_LIMIT_GIB}")
    return limit


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: macOS, Windows, musl
        return None
    return libc if hasattr(libc, "malloc_trim") else None


GLIBC = _glibc()


def return_freed_memory() -> None:
    """Give the memory that freed tensors leave behind back to the operating system, now.

    glibc keeps freed blocks for reuse, and the activations of training steps and encoding batches, each of its
    own size, leave them scattered through the heap, so a process stays at the resident size of its busiest
    moment and the next model or run piles on top of it. ``malloc_trim(0)`` returns every free page. ``train``
    calls it before its first step, after every step and at the end; every inference pass (``encode``,
    ``predict``, ``evaluate``) when it finishes; every pass over a ``make_loader`` loader when it starts. Next to
    a training step it costs nothing measurable, while it lowers the peak of a training run by about a tenth
    (notebook 04's kernel: ``benchmarks/notebook_memory.py``). It does nothing where glibc is absent.
    """
    if GLIBC is not None:
        GLIBC.malloc_trim(0)
