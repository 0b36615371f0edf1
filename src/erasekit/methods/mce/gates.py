"""MCE's gates: which units carry a mask, and the hard-concrete relaxation that trains them (§2.2–2.3).

One gate per unit: per hidden unit of every double-stream FFN of FLUX (image ``ff`` and text ``ff_context``, the
activation after the non-linearity), per output channel of the text stream's modulation linear
(``norm1_context.linear``: shift/scale/gate of attention and MLP), and optionally per attention head of the
double-stream joint attention. On UNets, per hidden unit of the FFN activations (GEGLU: one gate per unit, on
the activation's output, not one per half of its projection) and per output channel of the linears whose names
match a pattern.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from ...errors import UnsupportedModelError

# Hard-concrete constants of the released code: temperature, stretch interval (γ, ζ), and the noise bound ε,
# which keeps the logistic noise within ±ln 3, so λ ≥ 3.09 gives m ≡ 1 and λ ≤ −3.09 gives m ≡ 0.
TEMPERATURE = 0.83
GAMMA, ZETA = -0.1, 1.1
NOISE_EPS = 0.5
INIT_LOGIT = 3.0

# UNet default: the FFN's activation (GEGLU), one gate per hidden unit on its output, like FLUX's FFN gates.
DEFAULT_UNET_PATTERN = r".*transformer_blocks\.\d+\.ff\.net\.0$"


def relaxed_mask(logits: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The stretched, clipped hard-concrete sample for uniform ``noise`` in [0, 1)."""
    logistic = torch.log(noise + NOISE_EPS) - torch.log(1 - noise + NOISE_EPS)
    s = torch.sigmoid((logistic + logits) / TEMPERATURE)
    return (s * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)


def hard_mask(logits: torch.Tensor) -> torch.Tensor:
    """The inference mask: 1 where λ > 0."""
    return (logits > 0).to(torch.float32)


def is_gated_activation(module: nn.Module) -> bool:
    """Whether ``module`` is a gated linear unit (diffusers' GEGLU, SwiGLU): its ``proj`` outputs a value half and
    a gate half, and it outputs ``proj.out_features // 2`` hidden units."""
    from diffusers.models.activations import GEGLU, SwiGLU

    return isinstance(module, (GEGLU, SwiGLU))


def site_units(module: nn.Module, kind: str = "output") -> int | None:
    """How many gates a site on ``module`` has: attention heads (``kind`` ``"heads"``), a linear's output
    channels, or the hidden units a projected FFN activation outputs (GELU: ``proj.out_features``; GEGLU:
    half of it). ``None`` for a module that cannot carry gates."""
    if kind == "heads":
        return getattr(module, "heads", None)
    if isinstance(module, nn.Linear):
        return module.out_features
    proj = getattr(module, "proj", None)
    if not isinstance(proj, nn.Linear):
        return None
    return proj.out_features // 2 if is_gated_activation(module) else proj.out_features


@dataclass(frozen=True)
class Gate:
    """A masked site: ``module`` (a name in the denoiser), ``units`` gates, ``kind`` ``"output"`` (the module's
    output channels) or ``"heads"`` (attention heads, applied to the output projections' inputs)."""

    module: str
    units: int
    kind: str = "output"
    group: str = "ffn"  # "ffn", "norm" or "heads" (lr groups; the share pruned is reported per group)

    @property
    def key(self) -> str:
        return f"{self.module}.heads" if self.kind == "heads" else self.module


def find_gates(
    denoiser: nn.Module, family: str, heads: bool = False, unet_pattern: str = DEFAULT_UNET_PATTERN
) -> list[Gate]:
    """The masked sites of ``denoiser``; a clear error when it lacks the expected blocks."""
    modules = dict(denoiser.named_modules())
    if family == "flux":
        blocks = getattr(denoiser, "transformer_blocks", None)
        if not blocks:
            raise UnsupportedModelError(
                "MCE masks FLUX's double-stream blocks; this transformer has no `transformer_blocks`"
            )
        gates = []
        for i, block in enumerate(blocks):
            prefix = f"transformer_blocks.{i}"
            for ff in ("ff", "ff_context"):
                activation = modules.get(f"{prefix}.{ff}.net.0")
                proj = getattr(activation, "proj", None)
                if not isinstance(proj, nn.Linear):
                    raise UnsupportedModelError(
                        f"{prefix}.{ff} is not a diffusers FeedForward with a projected "
                        "activation; MCE cannot place its FFN gates"
                    )
                gates.append(Gate(f"{prefix}.{ff}.net.0", site_units(activation), group="ffn"))
            norm = modules.get(f"{prefix}.norm1_context.linear")
            if not isinstance(norm, nn.Linear):
                raise UnsupportedModelError(
                    f"{prefix} has no norm1_context.linear (AdaLN modulation of the text stream)"
                )
            gates.append(Gate(f"{prefix}.norm1_context.linear", norm.out_features, group="norm"))
            if heads:
                gates.append(Gate(f"{prefix}.attn", block.attn.heads, kind="heads", group="heads"))
        return gates
    if family == "sd":
        # Linears: their output channels; projected FFN activations (GEGLU): their hidden units, one gate each.
        pattern = re.compile(unet_pattern)
        gates = [
            Gate(name, site_units(m), group="ffn")
            for name, m in modules.items()
            if pattern.match(name) and site_units(m) is not None
        ]
        if not gates:
            raise UnsupportedModelError(
                f"no linear layer or FFN activation of this UNet matches {unet_pattern!r}; MCE has nothing to mask"
            )
        return gates
    raise UnsupportedModelError(f"MCE supports FLUX and SD UNets, not {family}")
