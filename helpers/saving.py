"""Save a model folder without losing what else is in it, and without leaving half a model.

A save writes its files into a staging folder beside the target, then swaps in only the entries it owns: the
ones it writes now and the ones the previous save wrote. Anything else in the folder (a user's NOTES.md, a
model card they edited) stays. A failure at any step moves every entry back, so the folder holds the previous
model, whole. The marker file, which says "a model is saved here", leaves first and comes back last: a process
killed in the middle of a swap leaves a folder that nothing mistakes for a model, and the previous entries in
a hidden folder beside it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Callable, Collection
from pathlib import Path

SavedEntries = Callable[[Path], Collection[str] | None]  # a folder -> the entries its save wrote, None: no save


def check_target(directory: Path, saved_entries: SavedEntries, what: str) -> None:
    """Refuse a file, or a non-empty folder that holds no earlier save (``saved_entries`` says None): a save
    never overwrites anything but its own files."""
    if directory.exists() and not directory.is_dir():
        raise FileExistsError(f"{directory} is a file, not a folder; save to a new or empty folder "
                              "(nothing was written)")
    if directory.is_dir() and any(directory.iterdir()) and saved_entries(directory) is None:
        raise FileExistsError(f"{directory} is not empty and does not hold a saved {what}; "
                              "save to a new or empty folder (nothing was written)")


def save_folder(directory: str | Path, write: Callable[[Path], None], saved_entries: SavedEntries, marker: str,
                what: str) -> Path:
    """Call ``write(staging)`` to write the files, then swap them into ``directory`` (see the module docstring).

    ``marker``: the file that marks a folder as saved; ``what`` names the model in errors. A symlinked
    ``directory`` stays a link: the folder it points to gets the files.
    """
    directory = Path(directory)
    check_target(directory, saved_entries, what)
    target = directory.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = _beside(target, "tmp")
    staging.mkdir()
    try:
        write(staging)
        if target.exists():
            _swap_entries(staging, target, set(saved_entries(target) or ()), marker)
        else:
            os.rename(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # already gone when it was renamed into place
    return directory


def replace_file(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(temporary)`` for a file beside ``path``, then rename it to ``path``: ``path`` is never
    half-written, and an existing one stays as it was until the new one is complete."""
    temporary = _beside(path, "tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def _beside(target: Path, kind: str) -> Path:
    return target.with_name(f".{target.name}.{kind}-{secrets.token_hex(4)}")


def _swap_entries(staging: Path, target: Path, old: set[str], marker: str) -> None:
    """Move the entries in ``old`` (the previous save's) out of ``target`` and those of ``staging`` in, marker
    out first and in last; on any failure, undo every move done so far and re-raise."""
    new = {path.name for path in staging.iterdir()}
    marker_first = sorted(old | new, key=lambda name: (name != marker, name))
    leaving = [name for name in marker_first if os.path.lexists(target / name)]
    arriving = sorted(new, key=lambda name: (name == marker, name))
    aside = _beside(target, "old")
    aside.mkdir()
    moves: list[tuple[Path, Path]] = [*((target / name, aside / name) for name in leaving),
                                      *((staging / name, target / name) for name in arriving)]
    done: list[tuple[Path, Path]] = []
    try:
        for source, destination in moves:
            os.rename(source, destination)
            done.append((source, destination))
    except BaseException:
        for source, destination in reversed(done):
            os.rename(destination, source)
        aside.rmdir()  # empty again; if an undo failed, the previous entries stay there
        raise
    shutil.rmtree(aside, ignore_errors=True)
