"""Errors: a user's mistake is an ErasekitError with one line saying what to do; a bug keeps its traceback, and
--debug (or ERASEKIT_DEBUG=1) shows the traceback of erasekit's own errors too."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
from typer.testing import CliRunner

import erasekit
from erasekit.errors import ErasekitError, UnknownConceptError

runner = CliRunner()


def test_every_exception_class_of_erasekit_is_an_erasekit_error():
    found = {}
    for info in pkgutil.walk_packages(erasekit.__path__, "erasekit."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == module.__name__:
                found[f"{module.__name__}.{name}"] = obj
    assert found, "no exception classes found: the scan is broken"
    assert [name for name, cls in found.items() if not issubclass(cls, ErasekitError)] == []


def test_a_users_mistake_is_one_line(tmp_path):
    from erasekit.cli import app

    result = runner.invoke(app, ["erase", "--concept", "dog", "--out", str(tmp_path / "e")])
    assert result.exit_code == 2
    assert "is not a concept of the toy world" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("how", ["option", "environment"])
def test_debug_shows_the_traceback_of_our_own_errors(tmp_path, monkeypatch, how):
    from erasekit.cli import app

    args = ["erase", "--concept", "dog", "--out", str(tmp_path / "e")]
    if how == "option":
        args = ["--debug", *args]
    else:
        monkeypatch.setenv("ERASEKIT_DEBUG", "1")
    result = runner.invoke(app, args)
    assert isinstance(result.exception, UnknownConceptError)
    # --debug does not stick to later commands in the same process
    monkeypatch.delenv("ERASEKIT_DEBUG", raising=False)
    assert runner.invoke(app, args[1:] if how == "option" else args).exit_code == 2


def test_a_bug_keeps_its_traceback(tmp_path, monkeypatch):
    """A ValueError that is not ours (a library's, or a bug of ours) is not turned into a tidy line."""
    from erasekit.cli import app

    def broken(*args, **kwargs):
        raise ValueError("something inside a library went wrong")

    monkeypatch.setattr("erasekit.workflows.erase.load", broken)
    result = runner.invoke(app, ["erase", "--concept", "star", "--out", str(tmp_path / "e")])
    assert isinstance(result.exception, ValueError) and not isinstance(result.exception, ErasekitError)
    assert result.exit_code == 1
