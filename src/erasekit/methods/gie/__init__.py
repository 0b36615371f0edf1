"""GIE — Growth Inhibitors for Erasure: the token interval, the attention control, the sampler, the adapter."""

from ...judges import CLIPJudge, Judge, NudeNetJudge, ToyJudge, make_judge
from .adapter import InhibitionAdapter, best_scale, fit_adapter, label_prompts
from .attention import InhibitionProcessor, InhibitionState, count_cross_attention_layers
from .config import GIEConfig
from .method import GIE, adapter_from_edit, gie_sampler
from .sampler import ControlSettings, InhibitedSampler, check_pipeline
from .token_interval import TargetTokenError, TokenInterval, align, token_interval

__all__ = [
    "adapter_from_edit",
    "align",
    "best_scale",
    "check_pipeline",
    "CLIPJudge",
    "ControlSettings",
    "count_cross_attention_layers",
    "fit_adapter",
    "GIE",
    "gie_sampler",
    "GIEConfig",
    "InhibitedSampler",
    "InhibitionAdapter",
    "InhibitionProcessor",
    "InhibitionState",
    "Judge",
    "label_prompts",
    "make_judge",
    "NudeNetJudge",
    "TargetTokenError",
    "token_interval",
    "TokenInterval",
    "ToyJudge",
]
