"""The configuration of SLD: the paper's four hyper-parameter presets, by name, with any value overridable."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ...config import CheckedConfig, InvalidSettingError, Range, at_least, between

# The paper's four hyper-parameter configurations ("Hyp-Weak" … "Hyp-Max"), as diffusers ships them in
# ``diffusers.pipelines.deprecated.stable_diffusion_safe.SafetyConfig`` (a test checks that they are equal):
# warm-up steps δ, safety guidance scale s_S, threshold λ, momentum scale s_m, momentum β_m.
PRESETS: dict[str, dict[str, float | int]] = {
    "weak": {
        "sld_warmup_steps": 15,
        "sld_guidance_scale": 20.0,
        "sld_threshold": 0.0,
        "sld_momentum_scale": 0.0,
        "sld_mom_beta": 0.0,
    },
    "medium": {
        "sld_warmup_steps": 10,
        "sld_guidance_scale": 1000.0,
        "sld_threshold": 0.01,
        "sld_momentum_scale": 0.3,
        "sld_mom_beta": 0.4,
    },
    "strong": {
        "sld_warmup_steps": 7,
        "sld_guidance_scale": 2000.0,
        "sld_threshold": 0.025,
        "sld_momentum_scale": 0.5,
        "sld_mom_beta": 0.7,
    },
    "max": {
        "sld_warmup_steps": 0,
        "sld_guidance_scale": 5000.0,
        "sld_threshold": 1.0,
        "sld_momentum_scale": 0.5,
        "sld_mom_beta": 0.7,
    },
}


@dataclass
class SLDConfig(CheckedConfig):
    """Safe Latent Diffusion (Schramowski et al., CVPR 2023, arXiv 2211.05105). ``preset`` names one of the
    paper's four hyper-parameter configurations (weak, medium, strong, max); a value given explicitly wins over
    the preset's.
    The default is ``medium``, the configuration ``StableDiffusionPipelineSafe.__call__`` defaults to.

    The names are diffusers' (``StableDiffusionPipelineSafe.__call__`` arguments), the symbols the paper's
    (Eqs. 3-8): ``sld_warmup_steps`` δ (steps before the safety term is applied; its momentum builds up from
    the first step), ``sld_guidance_scale`` s_S (Eq. 6: the element-wise scale ``min(1, s_S·|ε_p − ε_S|)``; the
    guidance is on only above 1, as in diffusers), ``sld_threshold`` λ (Eq. 6: elements where
    ``ε_p − ε_S ≥ λ`` get no safety term), ``sld_momentum_scale`` s_m (Eq. 7), ``sld_mom_beta`` β_m (Eq. 8).

    The safety concept is the erased concept text (several joined by ``separator``). The paper's own concept
    for inappropriate content is a long list of words (``PAPER_SAFETY_CONCEPT`` in ``erasekit.methods.sld``);
    pass it as the concept to reproduce the paper's I2P setting.
    """

    RANGES: ClassVar[dict[str, Range]] = {
        "sld_warmup_steps": at_least(0),
        "sld_guidance_scale": Range(low=1, low_open=True),
        "sld_momentum_scale": at_least(0),
        "sld_mom_beta": between(0, 1),
    }

    preset: str = "medium"  # the paper's configurations; diffusers' __call__ defaults are "medium"'s
    sld_warmup_steps: int | None = None  # δ (Eq. 3); None: the preset's
    sld_guidance_scale: float | None = None  # s_S (Eq. 6), > 1; None: the preset's
    sld_threshold: float | None = None  # λ (Eq. 6); None: the preset's
    sld_momentum_scale: float | None = None  # s_m (Eq. 7); None: the preset's
    sld_mom_beta: float | None = None  # β_m (Eq. 8), in [0, 1]; None: the preset's
    separator: str = ", "  # how several concepts become one safety concept

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise InvalidSettingError(f"preset must be one of {tuple(PRESETS)}, not {self.preset!r}")
        for key, value in PRESETS[self.preset].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        super().__post_init__()

    def values(self) -> dict[str, float | int]:
        """The five guidance values, keyed as ``PRESETS`` (and diffusers) name them."""
        return {key: getattr(self, key) for key in PRESETS["medium"]}
