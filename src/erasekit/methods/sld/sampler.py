"""SLD on the pipeline's own sampler: for the length of one ``__call__``, two hooks on the UNet turn its
classifier-free guidance into safe latent diffusion.

``StableDiffusionPipeline.__call__`` runs the UNet on ``[uncond, text]`` and guides with
``ε_∅ + s_g · (ε_p − ε_∅)``. The pre-hook appends the safety concept's rows to that batch (one pass over
``[uncond, text, safety]``, as ``StableDiffusionPipelineSafe`` does); the forward hook computes the safety term γ
(``erasekit.methods.sld.guidance``) and hands the pipeline ``[ε_∅, ε_p − γ]``, so its own guidance is SLD's
``ε_∅ + s_g · (ε_p − ε_∅ − γ)``. The UNet call index is the step index (one UNet call per entry of the
scheduler's timesteps, which is what diffusers' ``i`` counts, also for second-order schedulers). Everything
else — scheduler, latents, decoding, a negative prompt, weight and mask edits — is the pipeline's own, so SLD
composes with them; ``guidance_rescale`` (off by default) rescales against ``ε_p − γ``.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from ...errors import InvalidArgumentError, UnsupportedModelError
from .guidance import safety_term

# The safety concept of the paper and of ``StableDiffusionPipelineSafe`` (its ``safety_concept``).
PAPER_SAFETY_CONCEPT = (
    "an image showing hate, harassment, violence, suffering, humiliation, harm, suicide, sexual, nudity,"
    " bodily fluids, blood, obscene gestures, illegal activity, drug use, theft, vandalism, weapons, child"
    " abuse, brutality, cruelty"
)


def check_pipeline(pipeline) -> None:
    """SLD guides a Stable Diffusion pipeline's classifier-free guidance; anything else is refused."""
    needed = ("unet", "encode_prompt", "tokenizer", "text_encoder")
    if not all(hasattr(pipeline, name) for name in needed):
        raise UnsupportedModelError(
            "SLD needs a Stable Diffusion pipeline (UNet + CLIP, classifier-free guidance), "
            f"not {type(pipeline).__name__}"
        )
    if pipeline.unet.config.get("time_cond_proj_dim") is not None:
        raise UnsupportedModelError(
            "this UNet is guidance-distilled (time_cond_proj_dim is set): it samples without classifier-free "
            "guidance, which SLD modifies"
        )


def _extend(value: Any, n: int):
    """``value`` with its second half appended along the batch when it is a batch of ``n`` (recursively)."""
    if isinstance(value, torch.Tensor):
        return torch.cat([value, value[n // 2 :]]) if value.ndim and value.shape[0] == n else value
    if isinstance(value, (list, tuple)):
        return type(value)(_extend(v, n) for v in value)
    if isinstance(value, dict):
        return {k: _extend(v, n) for k, v in value.items()}
    return value


class _Run:
    """The state of one sampling call: the step index and the momentum ν."""

    def __init__(self, safety: torch.Tensor, values: dict):
        self.safety, self.values = safety, values
        self.step, self.momentum = 0, None

    def before(self, module, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        n = sample.shape[0]
        if n % 2:
            raise InvalidArgumentError(
                "SLD expected the UNet's classifier-free-guidance batch [unconditional, prompt]; it got an odd batch"
            )
        args, kwargs = list(args), dict(kwargs)
        if len(args) > 2:
            states, args[2] = args[2], None
        else:
            states = kwargs.pop("encoder_hidden_states")
        args, kwargs = _extend(args, n), _extend(kwargs, n)
        safety = self.safety.to(device=states.device, dtype=states.dtype).expand(n // 2, -1, -1)
        states = torch.cat([states, safety])
        if len(args) > 2:
            args[2] = states
        else:
            kwargs["encoder_hidden_states"] = states
        return tuple(args), kwargs

    def after(self, module, args, kwargs, output):
        tuple_output = isinstance(output, tuple)
        predictions = output[0] if tuple_output else output.sample
        uncond, text, safety = predictions.chunk(3)
        term, self.momentum = safety_term(uncond, text, safety, self.momentum, self.step, **self.values)
        self.step += 1
        guided = torch.cat([uncond, text - term])
        if tuple_output:
            return (guided, *output[1:])
        output.sample = guided
        return output


class SafeLatentSampler:
    """Call it like the pipeline: the pipeline's own ``__call__`` with safe latent diffusion guidance.

    Attributes:
        pipeline: the Stable Diffusion pipeline it drives.
        safety_concept: the text whose direction the guidance steers away from.
        values: the five SLD values (``SLDConfig.values()``).
    """

    def __init__(self, pipeline, safety_concept: str, values: dict):
        check_pipeline(pipeline)
        self.pipeline, self.safety_concept, self.values = pipeline, safety_concept, dict(values)

    def safety_embeddings(self, clip_skip: int | None = None) -> torch.Tensor:
        """The safety concept encoded as the pipeline encodes a prompt: ``(1, L, D)``."""
        pipe = self.pipeline
        with torch.no_grad():
            embeds, _ = pipe.encode_prompt(self.safety_concept, pipe._execution_device, 1, False, clip_skip=clip_skip)
        return embeds

    def __call__(self, *args, **kwargs):
        pipe = self.pipeline
        default = inspect.signature(type(pipe).__call__).parameters.get("guidance_scale")
        guidance = kwargs.get("guidance_scale", default.default if default is not None else 7.5)
        if not guidance > 1:
            raise InvalidArgumentError(
                f"SLD modifies classifier-free guidance, which is off at guidance_scale {guidance:g}; use a "
                "guidance scale > 1"
            )
        run = _Run(self.safety_embeddings(kwargs.get("clip_skip")), self.values)
        handles = [
            pipe.unet.register_forward_pre_hook(run.before, with_kwargs=True),
            pipe.unet.register_forward_hook(run.after, with_kwargs=True),
        ]
        try:
            return pipe(*args, **kwargs)
        finally:
            for handle in handles:
                handle.remove()
