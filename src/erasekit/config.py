"""Method settings that are typed and ranged: a wrong value is one clear line before any work, never a crash
(or a silent no-op) minutes later.

A method's ``Config`` dataclass derives from ``CheckedConfig`` and lists its bounds in ``RANGES``; every field is
checked against its annotated type and those bounds when the config is built, from Python or from the CLI.
``--set key=value`` text is parsed by the field's type (``parse_settings``), so ``steps=2.5`` or ``lr=abc`` is
refused instead of being passed on as a float or a string.
"""

from __future__ import annotations

import json
import math
import types
import typing
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from .errors import ErasekitError


class InvalidSettingError(ErasekitError, ValueError):
    """A setting has the wrong type or lies outside its range."""


@dataclass(frozen=True)
class Range:
    """An interval; ``low_open``/``high_open`` exclude the bound itself."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def contains(self, value: float) -> bool:
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return not (self.high is not None and (value > self.high or (self.high_open and value == self.high)))

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '≥'} {self.low:g}"
        if self.low is None:
            return f"{'<' if self.high_open else '≤'} {self.high:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


def at_least(low: float) -> Range:
    return Range(low=low)


def positive() -> Range:
    return Range(low=0, low_open=True)


def between(low: float, high: float) -> Range:
    return Range(low=low, high=high)


class CheckedConfig:
    """Mixin for a method's Config dataclass: types and ``RANGES`` are checked in ``__post_init__``.

    Subclasses with their own ``__post_init__`` call ``super().__post_init__()`` first.
    """

    RANGES: ClassVar[dict[str, Range]] = {}

    def __post_init__(self):
        check_config(self)


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _options(annotation) -> tuple[list, bool]:
    """The non-None types of an annotation and whether ``None`` is allowed."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args, len(args) < len(typing.get_args(annotation))
    return [annotation], False


def _type_name(annotation) -> str:
    options, optional = _options(annotation)
    names = []
    for option in options:
        origin = typing.get_origin(option)
        if origin is list:
            names.append(f"a list of {_type_name(typing.get_args(option)[0])}s")
        else:
            names.append(
                {int: "an integer", float: "a number", bool: "true or false", str: "text"}.get(
                    option, getattr(option, "__name__", str(option))
                )
            )
    return " or ".join(names + (["null"] if optional else []))


def _fits(value: Any, annotation) -> bool:
    options, optional = _options(annotation)
    if value is None:
        return optional
    for option in options:
        origin = typing.get_origin(option)
        if origin is list:
            if isinstance(value, list) and all(_fits(v, typing.get_args(option)[0]) for v in value):
                return True
        elif option is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return True
        elif option is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return True
        elif option is Any or (isinstance(option, type) and isinstance(value, option)):
            return True
    return False


def _numbers(value: Any) -> list:
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def check_config(config) -> None:
    """Every field of the dataclass ``config`` against its type, finiteness and ``RANGES``; floats given as
    integers are stored as floats."""
    hints = _hints(type(config))
    ranges = getattr(config, "RANGES", {})
    for f in fields(config):
        value, annotation = getattr(config, f.name), hints[f.name]
        if not _fits(value, annotation):
            raise InvalidSettingError(f"setting {f.name} must be {_type_name(annotation)}, got {value!r}")
        if (
            isinstance(value, int)
            and not isinstance(value, bool)
            and float in _options(annotation)[0]
            and int not in _options(annotation)[0]
        ):
            setattr(config, f.name, float(value))
        for number in _numbers(value):
            if not math.isfinite(number):
                raise InvalidSettingError(f"setting {f.name} must be a finite number, got {number!r}")
            bound = ranges.get(f.name)
            if bound is not None and not bound.contains(number):
                raise InvalidSettingError(f"setting {f.name} must be {bound}, got {number!r}")


_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def parse_value(name: str, text: str, annotation) -> Any:
    """``--set`` text read as the field's type: ``"5"`` for an int, ``"[1, 2]"`` for a list, ``"null"`` for None."""
    options, optional = _options(annotation)
    stripped = text.strip()
    if optional and stripped.lower() in ("null", "none"):
        return None
    for option in options:
        if option is str:
            return text
        try:
            if option is bool:
                if stripped.lower() in _TRUE | _FALSE:
                    return stripped.lower() in _TRUE
                continue
            if option is int:
                return int(stripped)
            if option is float:
                return float(stripped)
            if typing.get_origin(option) is list:
                value = json.loads(stripped)
                if isinstance(value, list):
                    return value
        except ValueError:
            continue
    raise InvalidSettingError(f"setting {name} must be {_type_name(annotation)}, got {text!r}")


def parse_settings(config_cls, overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` with every text value for a non-text field parsed by that field's type (the CLI passes
    text; Python callers pass values, which ``check_config`` checks when the config is built)."""
    hints = _hints(config_cls)
    return {
        key: parse_value(key, value, hints[key]) if isinstance(value, str) and key in hints else value
        for key, value in overrides.items()
    }
