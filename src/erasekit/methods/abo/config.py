"""The configuration of All-but-One (a reconstruction: see ``method``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ...config import Range, at_least
from ..training import FineTuneSettings


@dataclass
class ABOConfig(FineTuneSettings):
    """Proposed defaults (ESD's, as the nearest published neighbour): lr 1e-5, 1000 iterations, batch 1.

    ``toy_defaults()`` holds the settings used on the toy world (README results table).
    """

    RANGES: ClassVar[dict[str, Range]] = FineTuneSettings.RANGES | {
        "uncond_weight": at_least(0),
        "keep_weight": at_least(0),
        "trajectories": at_least(1),
        "sample_steps": at_least(1),
        "sample_guidance": at_least(0),
    }

    train_method: str = "xattn"
    lr: float = 1e-5
    steps: int = 1000
    batch_size: int = 1
    uncond_weight: float = 1.0  # λ_u: holds the unconditional score still
    keep_weight: float = 0.0  # λ_k: optional keep-set term over preserve prompts
    zero_guidance: bool = False  # retarget to zero guidance even when an alternative concept is given
    trajectories: int = 32  # frozen-model trajectories x_t is drawn from
    sample_steps: int = 50
    sample_guidance: float = 3.0

    @classmethod
    def toy_defaults(cls, **overrides) -> ABOConfig:
        base = dict(lr=3e-4, steps=300, batch_size=8, keep_weight=5.0, trajectories=48, sample_steps=10)
        return cls(**(base | overrides))
