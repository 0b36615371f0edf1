"""The typer application every command module registers on, and what they share: the consoles, the error
guard, settings parsing."""

from __future__ import annotations

import functools
import math

import typer
from rich.console import Console

from ..errors import ErasekitError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Remove a concept from a text-to-image diffusion model, and prove it did.")
toy_app = typer.Typer(no_args_is_help=True, help="The toy world: train and measure the shipped toy models.")
app.add_typer(toy_app, name="toy")
out = Console()
err = Console(stderr=True, soft_wrap=True)

def fail(message: str, code: int = 2):
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def guard(fn):
    """Turn the library's own errors into one clear line and a non-zero exit code."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ErasekitError, FileExistsError, ValueError) as e:
            fail(str(e))
    return wrapper


def parse_settings(pairs: list[str] | None) -> dict[str, str]:
    """``key=value`` pairs as text: the method's Config parses each value by its field's type."""
    settings = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set takes key=value, got '{pair}'")
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
