"""The ``erasekit`` command line (typer + rich): one module per command group, each a thin layer over a workflow."""

from __future__ import annotations

import os

from . import attack, bench, demo, erase, evaluate, generate, info, toy  # noqa: F401  (registers the commands)
from .app import app

__all__ = ["app", "main"]


def _quiet_libraries() -> None:
    # Library chatter (torchvision notices, per-component loading bars) buries the CLI's own output.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    import diffusers.utils.logging as dlog
    import transformers.utils.logging as tlog

    dlog.set_verbosity_error()
    dlog.disable_progress_bar()
    tlog.set_verbosity_error()
    tlog.disable_progress_bar()


def main():
    _quiet_libraries()
    app()
