"""Fréchet distance between two sets of feature vectors (the distance behind FID).

Kept as the import path ``erasekit.eval.fid.frechet_distance``; the function lives in :mod:`erasekit.eval.metrics`,
next to ``fid``."""

from __future__ import annotations

from .metrics import frechet_distance  # one implementation, torchmetrics', shared with `metrics.fid`

__all__ = ["frechet_distance"]
