"""Timing shared by the benchmark scripts (imported as a sibling module: run them as `python benchmarks/x.py`)."""

from __future__ import annotations

import time


def timed(fns: dict, repeats: int) -> dict:
    """Best-of-``repeats`` seconds per function, the runs interleaved so that drifts in machine load hit all alike."""
    for fn in fns.values():
        fn()  # warm-up
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best
