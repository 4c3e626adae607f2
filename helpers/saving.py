"""Save a model folder without losing what else is in it, and without leaving half a model.

One scheme for every kind of saved folder (a multi-task model, an encoder in the sentence-transformers format).
A save writes its files into a staging folder beside the target, then swaps in only the entries it owns: the
ones it writes now and the ones the previous save wrote. Its marker file (which says "a model is saved here")
records those entries under ``saved_by``, with a hash of each file a user may edit (a model card): an edited
one is no longer the save's. Anything else in the folder (a user's NOTES.md, a model card they edited) stays,
and a file of theirs that has the name of one the save writes is kept, with a warning, in place of the save's.
A failure at any step moves every entry back, so the folder holds the previous model, whole. The marker leaves
first and comes back last: a process killed in the middle of a swap leaves a folder that nothing mistakes for
a model, and the previous entries in a hidden folder beside it.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import warnings
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


def save_folder(directory: str | Path, write: Callable[[Path], dict], saved_entries: SavedEntries, marker: str,
                format: str, what: str, editable: Collection[str] = ()) -> Path:
    """Call ``write(staging)`` to write every file but ``marker`` and return the marker's content, then add the
    record of what was saved to it, write it, and swap the files into ``directory`` (see the module docstring).

    ``saved_entries``: reads that record back (``owned_entries``); ``format`` names the kind of folder in it;
    ``editable``: files a user may edit, recorded with their hash; ``what`` names the model in errors. A
    symlinked ``directory`` stays a link: the folder it points to gets the files.
    """
    directory = Path(directory)
    check_target(directory, saved_entries, what)
    target = directory.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    owned = set(saved_entries(target) or ()) if target.exists() else set()
    staging = _beside(target, "tmp")
    staging.mkdir()
    try:
        content = write(staging)
        _keep_theirs(staging, target, owned, directory.name)
        written = sorted({path.name for path in staging.iterdir()} | {marker})
        content["saved_by"] = {"format": format, "files": written,
                               "sha256": {name: _sha256(staging / name) for name in editable
                                          if (staging / name).is_file()}}
        write_json(staging / marker, content)
        if target.exists():
            _swap_entries(staging, target, owned, marker)
        else:
            os.rename(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # already gone when it was renamed into place
    return directory


def owned_entries(folder: Path, saved_by: object, format: str) -> set[str] | None:
    """The entries of ``folder`` that the save recorded in ``saved_by`` wrote, less the files it hashed that have
    changed since; None when ``saved_by`` is not a record of a ``format`` save. Plain names only (``is_plain_name``):
    a save never moves anything outside its folder."""
    if not isinstance(saved_by, dict) or saved_by.get("format") != format or not isinstance(saved_by.get("files"),
                                                                                              list):
        return None
    hashes = saved_by.get("sha256") if isinstance(saved_by.get("sha256"), dict) else {}
    return {name for name in saved_by["files"] if is_plain_name(name)
            and (name not in hashes or _sha256(folder / name) == hashes[name])}


def is_plain_name(name: object) -> bool:
    """A str that names an entry of a folder itself: not empty, ``.``, ``..`` or a path."""
    return isinstance(name, str) and name not in ("", ".", "..") and Path(name).name == name


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


def _sha256(path: Path) -> str | None:
    """The file's hash; None for anything that is not a readable file."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _keep_theirs(staging: Path, target: Path, owned: set[str], name: str) -> None:
    """Take out of ``staging`` every entry whose name is taken in ``target`` by one the save does not own."""
    for entry in sorted(staging.iterdir()):
        if os.path.lexists(target / entry.name) and entry.name not in owned:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            warnings.warn(f"kept the {entry.name} in {name}: save did not write it, or it was edited since, so the "
                          f"save's own {entry.name} was not written; move it away to get a fresh one", UserWarning,
                          stacklevel=4)


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
