"""`erasekit demo`: erase a concept from toy-sd, evaluate it, write an HTML report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from .app import app, guard, out, print_edit_notes


@app.command()
@guard
def demo(
    out_dir: Path = typer.Option(Path("demo-report"), "--out", "-o"),
    concept: str = typer.Option("star"),
    n: int = typer.Option(24, min=2, help="Prompts per group of the toy suite (the full suite uses 90-180)."),
    method: Optional[str] = typer.Option(None, help="Method to use (default: the best available)."),
):
    """Erase a concept from toy-sd with the best available method, evaluate it, write an HTML report."""
    from ..workflows.demo import demo as run

    start = time.time()
    report, result = run(out_dir, concept, n, method, log=out.print, on_edit=print_edit_notes)
    out.print(result.table())
    out.print(f"report: {report}   ({time.time() - start:.0f}s)")
