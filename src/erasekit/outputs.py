"""Where erasekit writes: checked before any work starts, and never at the cost of files it did not write.

Three rules, for every command that writes:

* an output path is checked first (a file where a folder is wanted, a folder that cannot be written), so a
  mistake fails in the first second, not after minutes of training or generation;
* ``overwrite`` replaces only what erasekit wrote — an edit folder (``edit.json``) or a run folder (``RUN_RECORD``)
  — and never the current folder, one of its parents or the home folder;
* a run folder that is resumed (images reused) records what made its contents, and is resumed only by a run with
  the same record (``open_run_folder``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .atomic import json_text, write_json
from .errors import ErasekitError

RUN_RECORD = "erasekit-run.json"
EDIT_MANIFEST = "edit.json"  # edits.MANIFEST; repeated here so this module stays below edits


class OutputError(ErasekitError, ValueError):
    """An output path is unusable (a file, unwritable) or holds something erasekit must not replace."""


class OutputExistsError(OutputError, FileExistsError):
    """An output that must be new already exists."""


class StaleRunError(OutputError):
    """A run folder holds results of another run (other prompts, edits, model or settings)."""


def _path(path: str | os.PathLike, option: str) -> Path:
    if not str(path).strip():
        raise OutputError(f"{option} is empty; give a path")
    return Path(path).expanduser()


def is_protected(path: Path) -> bool:
    """The current folder, the home folder, or a parent of either: never replaced, whatever is in them."""
    target = path.resolve()
    return any(target == p or target in p.parents for p in (Path.cwd().resolve(), Path.home().resolve()))


def written_by_erasekit(path: Path) -> bool:
    """An edit folder or a run folder (the markers erasekit writes), and nothing else."""
    return (path / EDIT_MANIFEST).is_file() or (path / RUN_RECORD).is_file()


def check_writable(path: Path, option: str) -> None:
    """``path`` (file or folder, existing or not) can be created or replaced: its nearest existing parent is a
    folder this process can write in. Probed with a temporary file, which also covers read-only file systems."""
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"{option} {path}: {parent} is a file, so nothing can be written under it")
    try:
        fd, probe = tempfile.mkstemp(prefix=".erasekit-probe-", dir=parent)
    except OSError as e:
        raise OutputError(
            f"{option} {path}: cannot write in {parent} ({e.strerror or e}); choose another place"
        ) from None
    os.close(fd)
    os.unlink(probe)


def check_output_dir(path: str | os.PathLike, overwrite: bool = False, option: str = "--out") -> Path:
    """A folder about to be written as a whole (an edit, an attack's results): new, or, with ``overwrite``,
    one erasekit wrote. Call it before the work; the write itself goes through ``atomic.atomic_directory``."""
    folder = _path(path, option)
    if folder.exists():
        if not folder.is_dir():
            raise OutputError(f"{option} {folder} is a file; give a folder that does not exist yet")
        if not overwrite:
            raise OutputExistsError(f"{folder} already exists; choose another {option} or pass --overwrite")
        check_replaceable(folder, option)
    check_writable(folder, option)
    return folder


def check_replaceable(folder: Path, option: str = "--out") -> None:
    if is_protected(folder):
        raise OutputError(
            f"refusing to replace {folder}: it is the current folder, the home folder or a parent "
            f"of one; choose a new {option}"
        )
    if not written_by_erasekit(folder):
        raise OutputError(
            f"refusing to replace {folder}: erasekit did not write it (no {EDIT_MANIFEST} or "
            f"{RUN_RECORD}); choose a new {option} or remove it yourself"
        )


def remove_folder(folder: Path, option: str = "--out") -> None:
    """Delete a folder erasekit wrote (checked again here: the one place that deletes a user's path)."""
    check_replaceable(folder, option)
    shutil.rmtree(folder)


def check_output_file(path: str | os.PathLike | None, option: str = "--json") -> Path | None:
    """A file about to be written (``-`` is standard output): not a folder, in a place that can be written."""
    if path is None or str(path) == "-":
        return None if path is None else Path("-")
    file = _path(path, option)
    if file.is_dir():
        raise OutputError(f"{option} {file} is a folder; give a file name")
    check_writable(file, option)
    return file


def open_run_folder(
    path: str | os.PathLike, kind: str, record: dict[str, Any], overwrite: bool = False, option: str = "--out"
) -> Path:
    """Make or resume a run folder whose contents ``record`` describes (what made them: inputs, model, settings).

    A new or empty folder gets the record. A folder with the same ``kind`` and record is resumed. Anything else is
    refused — another run's images would be scored as this one's — unless ``overwrite`` starts afresh, which
    deletes the folder only if erasekit wrote it.
    """
    folder = _path(path, option)
    record = json.loads(json_text(record))  # as it will read back
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{option} {folder} is a file; give a folder")
    if folder.is_dir() and any(folder.iterdir()):
        found = _read_record(folder)
        if found is not None and found.get("kind") == kind and found.get("record") == record:
            return folder
        if not overwrite:
            if found is None:
                raise OutputError(
                    f"{folder} holds files erasekit did not write (no {RUN_RECORD}); choose a new {option}"
                )
            raise StaleRunError(
                f"{folder} holds another run ({_difference(found, kind, record)}); its images "
                f"would be scored as this run's. Choose a new {option}, or pass --overwrite to "
                "start afresh there"
            )
        remove_folder(folder, option)
    check_writable(folder / RUN_RECORD, option)
    folder.mkdir(parents=True, exist_ok=True)
    write_run_record(folder, kind, record)
    return folder


def write_run_record(folder: str | os.PathLike, kind: str, record: dict[str, Any]) -> Path:
    """``<folder>/RUN_RECORD``: the mark that erasekit wrote the folder, and what it holds (``open_run_folder``)."""
    return write_json(Path(folder) / RUN_RECORD, {"kind": kind, "record": record})


def _read_record(folder: Path) -> dict | None:
    try:
        return json.loads((folder / RUN_RECORD).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise OutputError(f"{folder / RUN_RECORD} cannot be read ({e}); the run folder is damaged") from None


def _difference(found: dict, kind: str, record: dict) -> str:
    if found.get("kind") != kind:
        return f"a {found.get('kind')} run, not {kind}"
    old = found.get("record") or {}
    keys = sorted(k for k in set(old) | set(record) if old.get(k) != record.get(k))
    return "other " + ", ".join(keys)
