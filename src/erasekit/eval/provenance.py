"""What produced a number: library versions, model and sampler, judge, prompt file — recorded with every result.

The peer repositories' most common complaint is that nobody can reproduce a paper's nudity counts or attack
success rates because the detector version, threshold, seeds or diffusers version went unstated. Every
``results.json`` and report erasekit writes carries the dictionaries built here.
"""

from __future__ import annotations

from ..checksums import sha256_file
from ..edits import library_versions as environment  # the versions an edit manifest records, too

__all__ = ["environment", "sampling", "toy_judge"]


def sampling(backbone, num_inference_steps: int | None = None, guidance_scale: float | None = None) -> dict:
    """The model and how it was sampled: scheduler class, steps, guidance and image size actually used."""
    d = backbone.defaults
    return {
        "model": backbone.name_or_path,
        "family": backbone.family,
        "scheduler": type(backbone.pipeline.scheduler).__name__,
        "steps": num_inference_steps or d.num_inference_steps,
        "guidance_scale": d.guidance_scale if guidance_scale is None else guidance_scale,
        "height": d.height,
        "width": d.width,
    }


def toy_judge(world_version: int = 1) -> dict:
    """The toy world's judge (world v1: the classifier; v2: the scene judge): its weights' hash pins the checkpoint."""
    from ..models import toy_weights_dir

    folder, detector, rule = (
        ("classifier", "erasekit toy classifier", "concept present when its head's argmax is the concept")
        if world_version == 1
        else (
            "judge",
            "erasekit scene judge",
            "concept present when some occupied cell's head (for a style: the style head) predicts it",
        )
    )
    weights = toy_weights_dir() / folder / "diffusion_pytorch_model.safetensors"
    return {
        "detector": detector,
        "toy_world_version": world_version,
        "checkpoint": f"{folder}/{weights.name}",
        "checkpoint_sha256": sha256_file(weights) if weights.is_file() else None,
        "rule": rule,
    }
