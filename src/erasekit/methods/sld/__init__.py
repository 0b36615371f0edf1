"""SLD, Safe Latent Diffusion: its Config (the paper's presets), the guidance term, the sampler and the method."""

from .config import PRESETS, SLDConfig
from .guidance import guided, safety_term
from .method import SLD, sld_sampler
from .sampler import PAPER_SAFETY_CONCEPT, SafeLatentSampler

__all__ = [
    "PAPER_SAFETY_CONCEPT",
    "PRESETS",
    "SLD",
    "SLDConfig",
    "SafeLatentSampler",
    "guided",
    "safety_term",
    "sld_sampler",
]
