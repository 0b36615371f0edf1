"""MCE's end-to-end objective: supervise only the sampler's final output, back-propagate through every step.

Memory does not grow with the number of steps K: the rollout runs without a graph and keeps the K + 1 latents;
the backward pass then recomputes one step at a time with autograd, from the last to the first, carrying the
gradient with respect to the latents back through each step (step-wise recomputation). Each step uses the mask
noise its forward pass used (the released code draws fresh noise in the recomputation; we do not).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from .hooks import MaskHooks


def rollout(
    backbone,
    state,
    cond,
    uncond,
    guidance,
    hooks: MaskHooks | None = None,
    noises: Sequence[dict] | None = None,
    steps: int | None = None,
) -> list:
    """The sampler's states ``[x_T, ..., x_0]`` (no graph unless grad is enabled by the caller)."""
    states = [state]
    for k in range(steps if steps is not None else len(state.timesteps)):
        if hooks is not None and noises is not None:
            hooks.noise = noises[k]
        states.append(backbone.step(states[-1], cond, uncond, guidance))
    return states


def mce_loss(final: torch.Tensor, target: torch.Tensor, is_concept: torch.Tensor, beta: float) -> torch.Tensor:
    """Mean squared error to the target, per sample: concept samples weigh 1, neutral samples weigh β.

    ``is_concept`` is a boolean per row of ``final``. Each term is averaged over its own rows.
    """
    per_sample = F.mse_loss(final.float(), target.float(), reduction="none").flatten(1).mean(dim=1)
    concept = per_sample[is_concept].mean() if is_concept.any() else per_sample.new_zeros(())
    neutral = per_sample[~is_concept].mean() if (~is_concept).any() else per_sample.new_zeros(())
    return concept + beta * neutral


def end_to_end_backward(
    backbone,
    state,
    cond,
    uncond,
    guidance,
    hooks: MaskHooks,
    noises: Sequence[dict],
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Accumulate d loss(x_0) / d logits into the logits' ``.grad`` with step-wise recomputation; return the loss."""
    with torch.no_grad():
        states = rollout(backbone, state, cond, uncond, guidance, hooks, noises)
    final = states[-1].latents.detach().requires_grad_(True)
    loss = loss_fn(final)
    (grad,) = torch.autograd.grad(loss, final)
    for k in range(len(states) - 2, -1, -1):
        hooks.noise = noises[k]
        x = states[k].latents.detach().requires_grad_(True)
        out = backbone.step(states[k].replace(latents=x), cond, uncond, guidance).latents
        logits = [p for p in hooks.logits.values() if p.requires_grad]
        grads = torch.autograd.grad(out, [x, *logits], grad_outputs=grad, allow_unused=True)
        grad = grads[0]
        for p, g in zip(logits, grads[1:]):
            if g is not None:
                p.grad = g if p.grad is None else p.grad + g
    return loss.detach()


def naive_backward(
    backbone,
    state,
    cond,
    uncond,
    guidance,
    hooks: MaskHooks,
    noises: Sequence[dict],
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """The same gradient by plain back-propagation through the whole rollout (memory grows with K): a reference."""
    states = rollout(backbone, state, cond, uncond, guidance, hooks, noises)
    loss = loss_fn(states[-1].latents)
    loss.backward()
    return loss.detach()
