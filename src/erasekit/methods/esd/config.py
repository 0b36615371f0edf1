"""The configuration of ESD, with the paper's defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ...config import Range, at_least
from ..training import FineTuneSettings


@dataclass
class ESDConfig(FineTuneSettings):
    """Paper defaults: lr 1e-5, 1000 iterations, batch 1, η = 1, DDIM 50 steps, trajectory guidance 3.

    ``toy_defaults()`` holds the settings used on the toy world (README results table).
    """

    RANGES: ClassVar[dict[str, Range]] = FineTuneSettings.RANGES | {
        "negative_guidance": at_least(0),
        "sample_steps": at_least(1),
        "sample_guidance": at_least(0),
    }

    train_method: str = "xattn"
    lr: float = 1e-5
    steps: int = 1000
    batch_size: int = 1
    negative_guidance: float = 1.0  # η
    sample_steps: int = 50  # DDIM steps of the trajectory x_t is drawn from
    sample_guidance: float = 3.0

    @classmethod
    def toy_defaults(cls, **overrides) -> ESDConfig:
        base = dict(lr=1e-4, steps=200, batch_size=4, sample_steps=10)
        return cls(**(base | overrides))
