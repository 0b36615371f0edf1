"""The typer application every command module registers on, and what they share: the consoles, the error
guard, settings parsing."""

from __future__ import annotations

import functools
import math
import os

import typer
from rich.console import Console

from ..errors import ErasekitError, InvalidArgumentError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Remove a concept from a text-to-image diffusion model, and prove it did.",
)
toy_app = typer.Typer(no_args_is_help=True, help="The toy world: train and measure the shipped toy models.")
app.add_typer(toy_app, name="toy")
out = Console()
err = Console(stderr=True, soft_wrap=True)

DEBUG_VARIABLE = "ERASEKIT_DEBUG"  # set to 1 (or pass --debug) to see the traceback of erasekit's own errors too


@app.callback()
def main_options(
    debug: bool = typer.Option(
        False,
        "--debug",
        help=f"Show the full traceback of every error, erasekit's own included (also: {DEBUG_VARIABLE}=1).",
    ),
):
    """Remove a concept from a text-to-image diffusion model, and prove it did."""
    _options["debug"] = debug  # every invocation sets it afresh


_options = {"debug": False}


def debugging() -> bool:
    return _options["debug"] or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")


def fail(message: str, code: int = 2):
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def guard(fn):
    """Turn erasekit's own errors (``ErasekitError``: a mistake of the user's, with what to do) into one line and
    exit code 2. Anything else is a bug, ours or a library's, and keeps its traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ErasekitError as e:
            if debugging():
                raise
            fail(str(e))

    return wrapper


def parse_settings(pairs: list[str] | None) -> dict[str, str]:
    """``key=value`` pairs as text: the method's Config parses each value by its field's type."""
    settings = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidArgumentError(f"--set takes key=value, got '{pair}'")
        settings[key.strip()] = value
    return settings


def finite(value: float | None) -> float | None:
    """Callback of float options: NaN and infinities pass typer's range checks, so they are refused here."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


def print_edit_notes(edit) -> None:
    """What a user should know about a new edit: the units a mask switches off, the method's notes."""
    share = edit.data.get("pruned_share") if edit.kind == "mask_set" else None
    if share:
        groups = ", ".join(f"{k.split()[1]} {v:.1%}" for k, v in share.items() if k.startswith("all "))
        out.print(f"units switched off: {groups}")
    if edit.notes:
        out.print(f"note: {edit.notes}")
