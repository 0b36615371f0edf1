"""Safe latent diffusion's guidance term as a pure function of one step's three noise predictions.

With ε_∅, ε_p, ε_S the predictions for the unconditional (or negative) prompt, the prompt and the safety
concept, classifier-free guidance with SLD is (SLD Eq. 3)

    ε̄ = ε_∅ + s_g · (ε_p − ε_∅ − γ),

    γ = μ ⊙ (ε_S − ε_∅) + s_m · ν                       (Eqs. 4, 7)
    μ = min(1, s_S · |ε_p − ε_S|)  where ε_p − ε_S < λ, else 0   (Eq. 6, element-wise)
    ν ← β_m · ν + (1 − β_m) · γ                          (Eq. 8, ν₀ = 0)

and γ is applied only from step δ on (the momentum builds up from the first step). These are the expressions of
``StableDiffusionPipelineSafe.__call__`` (diffusers 0.42), evaluated in the same order.
"""

from __future__ import annotations

import torch


def safety_term(
    uncond: torch.Tensor,
    text: torch.Tensor,
    safety: torch.Tensor,
    momentum: torch.Tensor | None,
    step: int,
    sld_warmup_steps: int,
    sld_guidance_scale: float,
    sld_threshold: float,
    sld_momentum_scale: float,
    sld_mom_beta: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(γ applied at this step, the new momentum ν)``: γ is zero before step ``sld_warmup_steps``."""
    if momentum is None:
        momentum = torch.zeros_like(text)
    scale = torch.clamp(torch.abs(text - safety) * sld_guidance_scale, max=1.0)
    scale = torch.where((text - safety) >= sld_threshold, torch.zeros_like(scale), scale)
    term = torch.mul(safety - uncond, scale)
    term = term + sld_momentum_scale * momentum
    momentum = sld_mom_beta * momentum + (1 - sld_mom_beta) * term
    applied = term if step >= sld_warmup_steps else torch.zeros_like(term)
    return applied, momentum


def guided(uncond: torch.Tensor, text: torch.Tensor, term: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Classifier-free guidance with the safety term: ``ε_∅ + s_g · ((ε_p − ε_∅) − γ)`` (Eq. 3)."""
    return uncond + guidance_scale * ((text - uncond) - term)
