"""Writes that never leave half a result: build in a temporary sibling, then rename into place."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_directory(target: str | Path):
    """Yield a temporary folder next to ``target``; on success it replaces ``target``, on error it is removed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    # mkdtemp makes the folder private (0700); the result should have the user's usual permissions.
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary sibling of ``path`` to write to; on success it is renamed onto ``path``, on error removed.

    For writers that take a file name (PIL's ``Image.save``, safetensors' ``save_file``): the temporary name keeps
    ``path``'s suffix, so a writer that picks the format by the extension still does. The file gets the user's usual
    permissions (the umask's), not ``mkstemp``'s private 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    return path


def nan_to_null(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, ±inf), at any depth of dicts, lists and tuples, replaced by
    ``None``: what JSON can hold (tuples become lists, as JSON writes them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: nan_to_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [nan_to_null(v) for v in value]
    return value


def json_text(payload: Any) -> str:
    """``payload`` as erasekit writes JSON, to a file or to standard output: indented, anything JSON has no type
    for as its ``str``, and a non-finite number (NaN: a rate over nothing, a removal rate with nothing to remove)
    as ``null``: ``NaN`` is not JSON and breaks other readers."""
    return json.dumps(nan_to_null(payload), indent=2, default=str, allow_nan=False)


def write_json(path: str | Path, payload: Any) -> Path:
    """Write ``json_text(payload)`` atomically (temporary file, then rename)."""
    return atomic_write_text(path, json_text(payload))
