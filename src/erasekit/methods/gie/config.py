"""The configuration of GIE: the released code's control windows and the paper's adapter training."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ...config import CheckedConfig, InvalidSettingError, Range, at_least, between, positive
from .sampler import ControlSettings


@dataclass
class GIEConfig(CheckedConfig):
    """Defaults of the released code (windows 0.8 / 0.4, the paper's replacement embedding) and of the paper's
    adapter training (MSE, Adam 1e-3, 2000 epochs, ~60 prompts). ``toy_defaults()``: settings for the toy world.
    """

    RANGES: ClassVar[dict[str, Range]] = {
        "cross_window": between(0, 1),
        "self_window": between(0, 1),
        "self_replace_max_tokens": at_least(1),
        "train_prompts": at_least(1),
        "epochs": at_least(1),
        "lr": positive(),
        "hidden": at_least(1),
        "num_inference_steps": at_least(1),
        "guidance_scale": at_least(0),
        "seed": at_least(0),
    }

    scale: float | None = None  # a fixed w for every target token; None trains (or uses) the adapter
    cross_window: float = 0.8  # share of steps (of N + 1) with controlled cross-attention
    self_window: float = 0.4  # share of steps with branch A's self-attention at the coarse levels
    self_replace_max_tokens: int | None = None  # coarse levels: ≤ this many positions (None: latent area / 16)
    embedding_source: str = "paper"  # "paper" (c around the insertion) or "edited_prompt" (the released code)
    allow_positive: bool = False  # the sign guard: w ≤ 0 unless this is set
    scale_grid: list[float] = field(default_factory=lambda: [-0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -5.0, -6.0, -8.0])
    train_prompts: int = 60
    epochs: int = 2000
    lr: float = 1e-3
    hidden: list[int] = field(default_factory=lambda: [64, 32])
    judge: str = "auto"  # "auto", "toy", "nudenet", "clip"
    judge_path: str | None = None  # a local CLIP folder for judge "clip"
    num_inference_steps: int | None = None  # of the labelling generations (default: the model's)
    guidance_scale: float | None = None
    seed: int | None = None  # labelling and adapter seeds; default: the request's seed (`erasekit erase --seed`)

    def __post_init__(self):
        super().__post_init__()
        if self.scale == 0:
            raise InvalidSettingError("scale 0 inhibits nothing (the edit would change no image); GIE needs w < 0")
        if self.scale is not None and self.scale > 0 and not self.allow_positive:
            raise InvalidSettingError(
                f"scale {self.scale} > 0 would strengthen the concept; GIE inhibits with w ≤ 0 "
                "(set allow_positive to override)"
            )
        if not self.scale_grid:
            raise InvalidSettingError("scale_grid is empty")

    @classmethod
    def toy_defaults(cls, **overrides) -> GIEConfig:
        return cls(**({"train_prompts": 32} | overrides))

    def control(self) -> ControlSettings:
        return ControlSettings(
            cross_window=self.cross_window,
            self_window=self.self_window,
            self_replace_max_tokens=self.self_replace_max_tokens,
            embedding_source=self.embedding_source,
            allow_positive=self.allow_positive,
        )
