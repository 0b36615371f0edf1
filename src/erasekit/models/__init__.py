"""Backbones: the verbs every erasure method uses, over diffusers pipelines of each supported family."""

from .base import GROUP_NAMES, Backbone, Conditioning, GenerationDefaults, SamplerState, make_generators
from .flux import FluxBackbone
from .loading import (
    TOY_MODELS,
    family_of,
    from_pipeline,
    is_toy,
    is_toy_folder,
    load,
    toy_weights_dir,
    toy_world_version,
)
from .sd import SDBackbone

__all__ = [
    "GROUP_NAMES",
    "TOY_MODELS",
    "Backbone",
    "Conditioning",
    "FluxBackbone",
    "GenerationDefaults",
    "SDBackbone",
    "SamplerState",
    "family_of",
    "from_pipeline",
    "is_toy",
    "is_toy_folder",
    "load",
    "make_generators",
    "toy_weights_dir",
    "toy_world_version",
]
