"""MCE — Minimalist Concept Erasure: gates, hooks, the end-to-end objective, baking and importing masks."""

from .flow_edit import flow_edit
from .gates import DEFAULT_UNET_PATTERN, INIT_LOGIT, Gate, find_gates, hard_mask, relaxed_mask
from .hooks import MaskHooks
from .objective import end_to_end_backward, mce_loss, naive_backward, rollout
from .prune import bake, import_released_masks

__all__ = [
    "DEFAULT_UNET_PATTERN", "INIT_LOGIT", "Gate", "MaskHooks", "bake", "end_to_end_backward", "find_gates", "flow_edit",
    "hard_mask", "import_released_masks", "mce_loss", "naive_backward", "relaxed_mask", "rollout",
]
