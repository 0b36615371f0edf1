"""MCE — Minimalist Concept Erasure: gates, hooks, the end-to-end objective, baking and importing masks."""

from .bake import bake, import_released_masks
from .config import MCEConfig
from .flow_edit import flow_edit
from .gates import DEFAULT_UNET_PATTERN, INIT_LOGIT, Gate, find_gates, hard_mask, relaxed_mask
from .hooks import MaskHooks
from .method import MCE, bake_mask_edit, gates_and_masks, mask_edit, merge_mask_edits, pruned_share
from .objective import end_to_end_backward, mce_loss, naive_backward, rollout

__all__ = [
    "bake",
    "bake_mask_edit",
    "DEFAULT_UNET_PATTERN",
    "end_to_end_backward",
    "find_gates",
    "flow_edit",
    "Gate",
    "gates_and_masks",
    "hard_mask",
    "import_released_masks",
    "INIT_LOGIT",
    "mask_edit",
    "MaskHooks",
    "MCE",
    "mce_loss",
    "MCEConfig",
    "merge_mask_edits",
    "naive_backward",
    "pruned_share",
    "relaxed_mask",
    "rollout",
]
