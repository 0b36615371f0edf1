"""GIE — Growth Inhibitors for Erasure: the token interval, the attention control, the sampler, the adapter."""

from .adapter import InhibitionAdapter, best_scale, fit_adapter, label_prompts
from .attention import InhibitionProcessor, InhibitionState, count_cross_attention_layers
from .judges import CLIPJudge, Judge, NudeNetJudge, ToyJudge, make_judge
from .sampler import ControlSettings, InhibitedSampler, check_pipeline
from .token_interval import TargetTokenError, TokenInterval, align, token_interval

__all__ = [
    "CLIPJudge", "ControlSettings", "InhibitedSampler", "InhibitionAdapter", "InhibitionProcessor",
    "InhibitionState", "Judge", "NudeNetJudge", "TargetTokenError", "TokenInterval", "ToyJudge", "align",
    "best_scale", "check_pipeline", "count_cross_attention_layers", "fit_adapter", "label_prompts", "make_judge",
    "token_interval",
]
