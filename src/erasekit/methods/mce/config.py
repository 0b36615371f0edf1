"""The configuration of MCE: the paper's settings, the released trainer's options, the toy world's defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ...config import CheckedConfig, InvalidSettingError, Range, at_least, positive
from .gates import DEFAULT_UNET_PATTERN, INIT_LOGIT


@dataclass
class MCEConfig(CheckedConfig):
    """The paper's settings (Adam with weight decay 1e-2 — decoupled, see ``optimizer`` —, lr 0.5 for FFN and
    norm gates, β 0.01, 400 steps, batch 4, constant schedule). ``toy_defaults()`` holds the settings used on the
    toy world (README results table)."""

    RANGES: ClassVar[dict[str, Range]] = {
        "lr_ffn": positive(),
        "lr_norm": positive(),
        "lr_heads": positive(),
        "beta": at_least(0),
        "steps": at_least(1),
        "batch_size": at_least(1),
        "weight_decay": at_least(0),
        "fixed_seed": at_least(0),
        "sampler_steps": at_least(1),
        "guidance_scale": at_least(0),
        "edit_steps": at_least(1),
        "edit_n_max": at_least(1),
        "edit_source_guidance": at_least(0),
        "edit_target_guidance": at_least(0),
        "num_neutral": at_least(1),
        "checkpoint_every": at_least(1),
        "seed": at_least(0),
    }

    lr_ffn: float = 0.5
    lr_norm: float = 0.5
    lr_heads: float = 0.5
    heads: bool = False  # gates on the double-stream attention heads too
    beta: float = 0.01
    steps: int = 400
    batch_size: int = 4  # samples per step, alternating concept and neutral prompts
    weight_decay: float = 1e-2
    # The paper's "Adam, weight decay 1e-2" read as decoupled decay (AdamW, the released code). "adam" couples
    # the decay into Adam's normalised gradient: every gate without a loss gradient then walks to λ = 0.
    optimizer: str = "adamw"
    # "empty_prompt" (paper); "neutral_prompt" (released code's alternative: the concept phrase replaced, sampled
    # from the same x_T); "flow_edit" (released code's default: the original image of the concept prompt edited
    # toward the neutral prompt with FlowEdit, by the model itself here, not FLUX.1-dev; flow-matching models only)
    target: str = "empty_prompt"
    neutral_phrase: str = "a thing"  # replaces the concept for target "neutral_prompt" (outside the toy world)
    # "random": neutral samples are neutral prompts drawn at random (paper, released code). "paired": each concept
    # sample's partner is its own target prompt on the same x_T, held at its original output — the masks may not
    # simply make the concept prompt and its counterpart alike by damaging both (no neutral prompt set is needed).
    neutral: str = "random"
    noise: str = "fresh"  # "fresh" x_T per sample, or "fixed": one seed for every sample (released code)
    fixed_seed: int = 48
    sampler_steps: int | None = None  # K (default: the model's generation steps)
    guidance_scale: float | None = None  # default: the model's
    edit_steps: int = 28  # FlowEdit's schedule (target "flow_edit"; released code's constants)
    edit_n_max: int = 24  # how many of its last steps edit
    edit_source_guidance: float = 1.5
    edit_target_guidance: float = 5.5
    # The model that edits the FlowEdit targets: a local diffusers folder or hub id of a flow-matching model with the
    # same latent space (the released code: black-forest-labs/FLUX.1-dev); default: the model being erased.
    edit_model: str | None = None
    neutral_prompts_file: str | None = None  # CC3M-style TSV/TXT of neutral captions (first column)
    num_neutral: int = 40
    unet_pattern: str = DEFAULT_UNET_PATTERN  # UNet sites: FFN activations (a gate per hidden unit), linears
    init_logit: float = INIT_LOGIT
    checkpoint_every: int = 25
    seed: int | None = None  # noise and prompt draws; default: the request's seed (`erasekit erase --seed`)

    def __post_init__(self):
        super().__post_init__()
        if self.target not in ("empty_prompt", "neutral_prompt", "flow_edit"):
            raise InvalidSettingError(
                f"target must be 'empty_prompt', 'neutral_prompt' or 'flow_edit', not {self.target!r}"
            )
        if not 0 < self.edit_n_max <= self.edit_steps:
            raise InvalidSettingError(f"edit_n_max must be in 1..edit_steps ({self.edit_steps}), got {self.edit_n_max}")
        if self.neutral not in ("random", "paired"):
            raise InvalidSettingError(f"neutral must be 'random' or 'paired', not {self.neutral!r}")
        if self.noise not in ("fresh", "fixed"):
            raise InvalidSettingError(f"noise must be 'fresh' or 'fixed', not {self.noise!r}")
        if self.optimizer not in ("adam", "adamw"):
            raise InvalidSettingError(f"optimizer must be 'adam' or 'adamw', not {self.optimizer!r}")
        if self.edit_model and self.target != "flow_edit":
            raise InvalidSettingError(
                f"edit_model edits FlowEdit targets; it needs target 'flow_edit', not {self.target!r}"
            )

    @classmethod
    def toy_defaults(cls, **overrides) -> MCEConfig:
        # Batch 8 and β 0.3 beat batch 4 / β 0.1 on toy-flux in erasure and preservation both (README).
        base = {"steps": 150, "sampler_steps": 8, "target": "neutral_prompt", "beta": 0.3, "batch_size": 8}
        return cls(**(base | overrides))
