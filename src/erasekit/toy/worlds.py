"""Which toy world a toy model was trained on, and that world's parts: the prompts the methods train on, the
judge, the concepts.

World v1: one 32×32 object per image, text encoders trained with the denoiser (``world``, ``prompts``,
``classifier``). World v2: 64×64 scenes of up to three objects and a style, frozen text encoders (``scenes``,
``scene_prompts``, ``scene_judge``). A toy model's erasekit.json says which (``toy_world_version``); everything
that reads the toy world for a model goes through here, so a model never meets another world's prompts or judge.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from torch import nn

from .weights import WORLD_VERSIONS, toy_weights_dir


def _check(version: int) -> int:
    if version not in WORLD_VERSIONS:
        raise ValueError(f"toy world version must be one of {WORLD_VERSIONS}, got {version!r}")
    return version


def prompts_of(version: int) -> ModuleType:
    """The module of the world's training prompts: ``check_concepts_toy``, ``toy_prompts``,
    ``toy_anchor_prompts``, ``toy_preserve_prompts`` (the same functions in both worlds)."""
    if _check(version) == 1:
        from . import prompts
    else:
        from . import scene_prompts as prompts
    return prompts


def check_concepts(concepts: Sequence[str], version: int) -> None:
    """Every concept must be one the world knows (``UnknownConceptError`` otherwise)."""
    prompts_of(version).check_concepts_toy(concepts)


def concept_head(concept: str, version: int) -> str:
    """The attribute a concept is a value of: shape, colour, pattern (and, in v2, style)."""
    if _check(version) == 1:
        from .world import concept_head as head
    else:
        from .scenes import concept_head as head
    return head(concept)


def clip_folder(version: int) -> Path | None:
    """The world's CLIP (a transformers CLIP folder, for CLIP scores): world v2's toy CLIP, shipped; v1 has none."""
    return toy_weights_dir() / "clip" if _check(version) == 2 else None


def load_world_judge(version: int) -> nn.Module:
    """The shipped judge of the world: the v1 classifier, or the v2 scene judge."""
    if _check(version) == 1:
        from .classifier import load_classifier

        return load_classifier()
    from .scene_judge import load_scene_judge

    return load_scene_judge()
