"""Rich progress bars for long work (training, generation, evaluation)."""

from __future__ import annotations

import os
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


class _Bar:
    def __init__(self, progress: Progress | None, task):
        self._progress, self._task = progress, task

    def update(self, completed: int, **metrics: float) -> None:
        if self._progress is None:
            return
        text = "  ".join(f"{k}={v:.4g}" for k, v in metrics.items())
        self._progress.update(self._task, completed=completed, metrics=text)

    def set_total(self, total: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, total=total)

    def advance(self, n: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)


def enabled() -> bool:
    """Bars are on unless ``ERASEKIT_PROGRESS=0`` (the test suite sets it): one switch, no guessing who runs us."""
    return os.environ.get("ERASEKIT_PROGRESS", "1") != "0"


@contextmanager
def progress_bar(description: str, total: int, disable: bool = False):
    """A progress bar on stderr; silent when ``disable``d or with ``ERASEKIT_PROGRESS=0``."""
    if disable or not enabled():
        yield _Bar(None, None)
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[metrics]}"),
        console=console,
        transient=False,
    )
    with progress:
        task = progress.add_task(description, total=total, metrics="")
        yield _Bar(progress, task)
