"""Arguments users hand to the Python API and the CLI, normalised once: lists of names, concept words.

A bare string where a list is expected is one item (``erase(..., "star")`` erases "star", not "s", "t", "a",
"r"); any other wrong type is a ``TypeError`` that names the argument.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import ErasekitError


class InvalidConceptError(ErasekitError, ValueError):
    """A concept is empty or holds characters no prompt should (control characters)."""


def as_list(value: Any, name: str, types: type | tuple[type, ...] = str) -> list:
    """``value`` as a list of ``types``: a single item becomes a one-item list, ``None`` an empty one."""
    if value is None:
        return []
    single = types if isinstance(types, tuple) else (types,)
    if isinstance(value, single):
        return [value]
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be {_names(single)} or a list of them, not {type(value).__name__}")
    items = list(value)
    for item in items:
        if not isinstance(item, single):
            raise TypeError(f"{name} must hold {_names(single)}, not {type(item).__name__} ({item!r})")
    return items


def as_paths(value: Any, name: str, keep: tuple[type, ...] = ()) -> list:
    """A list of folders (``str`` or ``os.PathLike``) or objects of ``keep`` (e.g. loaded ``Edit``s)."""
    return as_list(value, name, (str, os.PathLike, *keep))


def concept_text(value: Any, name: str = "concept") -> str:
    """One concept word or phrase: stripped, not empty, without control characters."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, not {type(value).__name__}")
    text = value.strip()
    if not text:
        raise InvalidConceptError(f"the {name} is empty")
    bad = next((ch for ch in text if unicodedata.category(ch).startswith("C")), None)
    if bad is not None:
        raise InvalidConceptError(
            f"the {name} {text!r} holds the control character {bad!r}; write the concept as plain text"
        )
    return text


def concept_list(value: Any, name: str = "concepts", what: str = "concept") -> list[str]:
    """Concepts as a list, each checked by ``concept_text``, blank ones dropped, duplicates merged (first
    occurrence kept)."""
    items = [v for v in as_list(value, name) if v.strip()]
    return list(dict.fromkeys(concept_text(v, what) for v in items))


def path_or_none(value: Any, name: str) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (str or os.PathLike), not {type(value).__name__}")
    return Path(value)


def _names(types: tuple[type, ...]) -> str:
    return " or ".join("a path" if t is os.PathLike else f"a {t.__name__}" for t in types)
