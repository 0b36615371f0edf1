"""FlowEdit targets: the original model's own image of a concept prompt, edited toward its neutral counterpart.

MCE's released trainer does not regenerate the neutral prompt from noise for its default target: it takes the
original model's image for the concept prompt and edits it with FlowEdit (Kulikov et al., 2024, "FlowEdit:
Inversion-Free Text-Based Editing Using Pre-Trained Flow Models"). The edit keeps what the prompts share
(layout, colour, texture, down to where the stripes fall) and changes what they do not, so the masks are asked
for a small, local change instead of a different image.

FlowEdit walks a path from the source latent without inverting it. At each noise level σ of a schedule, from
the ``n_max``-th last step down, it noises the source with fresh noise, ``z_src = (1 − σ) x_src + σ n``, shifts
that point by the edit made so far, ``z_tar = z_edit + z_src − x_src``, and moves the edit by the difference of
the two guided velocities: ``z_edit += (σ_next − σ) (v(z_tar, c_tar) − v(z_src, c_src))``. The released code edits
with FLUX.1-dev (28 steps, ``n_max`` 24, guidance 1.5 for the source and 5.5 for the target, one noise draw per
step, no plain sampling at the end). Whichever model edits, guidance follows the model: a guidance-distilled one
(``guidance_embeds``, as FLUX.1-dev) gets the two scales as its embedded guidance, one pass per velocity, as in
the released code; any other gets classifier-free guidance at those scales against the empty prompt. By default
the model being erased edits (its masks off); MCE's ``edit_model`` setting names a second model instead.
"""

from __future__ import annotations

import torch
from diffusers.utils.torch_utils import randn_tensor

from ...config import InvalidSettingError
from ...errors import InvalidArgumentError
from ...models.base import Conditioning


@torch.no_grad()
def flow_edit(
    backbone,
    source: torch.Tensor,
    source_cond: Conditioning,
    target_cond: Conditioning,
    uncond: Conditioning | None,
    *,
    steps: int = 28,
    n_max: int = 24,
    source_guidance: float = 1.5,
    target_guidance: float = 5.5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``source`` latents ``(B, C, h, w)`` (clean) edited from ``source_cond`` toward ``target_cond``.

    ``backbone`` must sample by flow matching (``velocity``); ``uncond`` is needed for guidance scales ≠ 1 unless
    the model is guidance-distilled (then it is not used).
    """
    if not hasattr(backbone, "velocity"):
        raise InvalidArgumentError(f"FlowEdit needs a flow-matching model; {backbone.family} is not one")
    if not 0 < n_max <= steps:
        raise InvalidSettingError(f"n_max must be in 1..steps ({steps}), got {n_max}")
    schedule = backbone.prepare(source.shape[0], num_inference_steps=steps, latents=torch.zeros_like(source))
    sigmas, timesteps = schedule.sigmas, schedule.timesteps
    edited = source.clone()
    distilled = bool(getattr(backbone.denoiser.config, "guidance_embeds", False))

    def guided(latents, timestep, cond, scale):
        if distilled:
            return backbone.velocity(latents, timestep, cond, embedded_guidance=scale)
        return backbone.velocity(latents, timestep, cond, uncond, scale)

    for i in range(steps - n_max, steps):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        noise = randn_tensor(source.shape, generator=generator, device=source.device, dtype=source.dtype)
        z_source = (1 - sigma) * source + sigma * noise
        z_target = edited + z_source - source
        v_source = guided(z_source, timesteps[i], source_cond, source_guidance)
        v_target = guided(z_target, timesteps[i], target_cond, target_guidance)
        edited = edited + (sigma_next - sigma) * (v_target - v_source)
    return edited
