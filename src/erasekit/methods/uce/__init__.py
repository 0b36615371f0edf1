"""UCE, Unified Concept Editing: its Config, the closed form and the registered method."""

from .closed_form import SingularSystemError, closed_form, guide_map, guide_update, normal_matrix, residual_bound
from .config import UCEConfig
from .embeddings import concept_vectors, occurrences, paired_positions, phrase_positions
from .method import UCE, edited_layers

__all__ = [
    "UCE",
    "SingularSystemError",
    "UCEConfig",
    "closed_form",
    "concept_vectors",
    "edited_layers",
    "guide_map",
    "guide_update",
    "normal_matrix",
    "occurrences",
    "paired_positions",
    "phrase_positions",
    "residual_bound",
]
