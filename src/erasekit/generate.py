"""Image generation through the pipeline's own ``__call__``, with whatever Edits are applied to it.

Going through the plain diffusers call (rather than our step-wise sampler) keeps generation as fast as
diffusers itself and means an applied Edit is exactly what a user of the exported pipeline gets.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .errors import InvalidArgumentError
from .models import Backbone
from .pipeline_state import call_kwargs, call_override
from .pipeline_state import set_call_kwargs as set_call_kwargs  # re-exported: the edits' side of the state
from .pipeline_state import set_call_override as set_call_override
from .progress import progress_bar

# What applied inference-control edits ask of generation (extra call arguments such as the negative prompt, or a
# sampler in place of the pipeline's ``__call__``) lives in the pipeline's ``PipelineState``
# (``erasekit.pipeline_state``); ``call_kwargs`` and ``call_override`` read it without creating it.


@torch.no_grad()
def generate(
    backbone: Backbone,
    prompts: Sequence[str],
    seeds: Sequence[int] | int = 0,
    *,
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    negative_prompt: str | None = None,
    batch_size: int = 32,
    progress: bool = False,
) -> torch.Tensor:
    """Images (N, 3, H, W) in [0, 1] for ``prompts``; image i uses ``torch.Generator().manual_seed(seeds[i])``.

    Same seed, same prompt, same image, whatever the batch size: each image gets its own generator.
    """
    prompts = list(prompts)
    if isinstance(seeds, int):
        seeds = [seeds + i for i in range(len(prompts))]
    seeds = list(seeds)
    if len(seeds) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
    d = backbone.defaults
    steps = num_inference_steps or d.num_inference_steps
    guidance = d.guidance_scale if guidance_scale is None else guidance_scale
    backbone.pipeline.set_progress_bar_config(disable=True)
    extra = call_kwargs(backbone.pipeline)
    sampler = call_override(backbone.pipeline) or backbone.pipeline
    if negative_prompt is not None:
        extra["negative_prompt"] = negative_prompt
    out = []
    with progress_bar("generating", total=len(prompts), disable=not progress) as bar:
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start : start + batch_size]
            gens = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds[start : start + batch_size]]
            kwargs = dict(
                prompt=chunk,
                generator=gens,
                num_inference_steps=steps,
                height=d.height,
                width=d.width,
                output_type="pt",
            )
            kwargs.update(_guidance_kwargs(backbone, guidance, extra, len(chunk)))
            images = sampler(**kwargs).images
            out.append(images.float().cpu().clamp(0, 1))
            bar.advance(len(chunk))
    return torch.cat(out) if out else torch.zeros(0, 3, d.height, d.width)


def _guidance_kwargs(backbone: Backbone, guidance: float, extra: dict, n: int) -> dict:
    extra = dict(extra)
    negative = extra.pop("negative_prompt", None)
    if backbone.family == "flux":
        kwargs = {"max_sequence_length": backbone.defaults.max_sequence_length or 256}
        if guidance > 1:
            # FLUX has no built-in unconditional branch: true CFG against an (empty) negative prompt.
            kwargs.update(true_cfg_scale=guidance, negative_prompt=[negative or ""] * n)
        elif negative:
            raise InvalidArgumentError(
                "a negative prompt on FLUX needs guidance_scale > 1 (true classifier-free guidance)"
            )
        if getattr(backbone, "embedded_guidance", None) is not None:
            kwargs["guidance_scale"] = backbone.embedded_guidance
    else:
        kwargs = {"guidance_scale": guidance}
        if negative:
            kwargs["negative_prompt"] = [negative] * n
    kwargs.update(extra)
    return kwargs
