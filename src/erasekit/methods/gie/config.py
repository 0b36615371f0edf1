"""The configuration of GIE: the released code's control windows and the paper's adapter training."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ...config import CheckedConfig, InvalidSettingError, Range, at_least, between, positive
from .sampler import EMBEDDING_SOURCES, ControlSettings

# Where the paper (Algorithm 1, §1.4–1.5 of the team's spec) and the released code (CD22104/
# Growth-Inhibitors-for-Erasure) differ, the settings each one fixes; a preset sets those the user leaves unset.
PRESETS: dict[str, dict[str, object]] = {
    "paper": {"embedding_source": "paper", "self_replace_max_tokens": None},
    "released": {"embedding_source": "edited_prompt", "self_replace_max_tokens": 256},
}


@dataclass
class GIEConfig(CheckedConfig):
    """Defaults of the paper (``preset="paper"``) where it and the released code differ, the released code's
    control windows (0.8 / 0.4, the same in both), and the paper's adapter training (MSE, Adam 1e-3, 2000 epochs,
    ~60 prompts). ``preset="released"`` (``--set preset=released``) reproduces the released code instead.
    ``toy_defaults()``: settings for the toy world.
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
    # "paper" or "released": the default of the two settings below (an explicit value of either wins).
    preset: str = "paper"
    # Self-attention is copied from A in the layers with at most this many query positions (§1.5). Unset (None),
    # the preset decides. "paper" keeps None: the paper's coarse levels, ≤ latent area / 16 positions, i.e. the 16²
    # and 8² levels of SD 1.x at 512 px, at any resolution. "released" sets 256: the released code
    # (attn_utils.py, replace_self_attention) tests ≤ 16² positions at any resolution. That is the same at 512 px,
    # more levels at smaller latents (every level of a small latent) and fewer at larger ones.
    self_replace_max_tokens: int | None = None
    # Branch B's embedding c_rep (§1.4): "paper" (Algorithm 1: c around the insertion, c* at the target slots) or
    # "edited_prompt" (the released code, generate_utils.py: P''s own encoding gathered through the alignment, so
    # the EOT slot takes the first target token's value and the padding has seen the target). None: the preset's.
    embedding_source: str | None = None
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
        if self.preset not in PRESETS:
            raise InvalidSettingError(f"preset must be one of {tuple(PRESETS)}, not {self.preset!r}")
        if self.embedding_source is None:
            self.embedding_source = PRESETS[self.preset]["embedding_source"]
        if self.self_replace_max_tokens is None:
            self.self_replace_max_tokens = PRESETS[self.preset]["self_replace_max_tokens"]
        if self.embedding_source not in EMBEDDING_SOURCES:
            raise InvalidSettingError(
                f"embedding_source must be one of {EMBEDDING_SOURCES}, not {self.embedding_source!r}"
            )
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
