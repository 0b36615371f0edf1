"""Masks applied by forward hooks, so the model's own modules and weights stay untouched until ``bake``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .gates import Gate, hard_mask, relaxed_mask


class MaskHooks:
    """Gates on a denoiser: ``mode`` ``"relaxed"`` (training: hard-concrete with the current ``noise``),
    ``"hard"`` (inference: binary λ > 0, or given binary ``masks``) or ``"off"`` (the original model).

    ``noise`` holds one uniform draw per gate; the caller sets it, so a step recomputed for the backward pass
    sees exactly the masks its forward pass saw.
    """

    def __init__(
        self,
        denoiser: nn.Module,
        gates: Sequence[Gate],
        logits: dict[str, torch.Tensor] | None = None,
        masks: dict[str, torch.Tensor] | None = None,
    ):
        self.denoiser = denoiser
        self.gates = list(gates)
        self.logits = logits or {}
        self.masks = masks or {}
        self.noise: dict[str, torch.Tensor] = {}
        self.mode = "hard"
        self._handles: list = []

    # --------------------------------------------------------------------------------------------- masks

    def draw_noise(self, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        return {g.key: torch.rand(g.units, generator=generator).to(self.logits[g.key].device) for g in self.gates}

    def current(self, gate: Gate) -> torch.Tensor | None:
        if self.mode == "off":
            return None
        if self.mode == "relaxed":
            return relaxed_mask(self.logits[gate.key], self.noise[gate.key])
        if gate.key in self.masks:
            return self.masks[gate.key]
        return hard_mask(self.logits[gate.key])

    # ------------------------------------------------------------------------------------------- install

    @property
    def installed(self) -> bool:
        return bool(self._handles)

    def install(self) -> MaskHooks:
        if self.installed:
            return self
        modules = dict(self.denoiser.named_modules())
        for gate in self.gates:
            if gate.kind == "heads":
                attn = modules[gate.module]
                for proj in (attn.to_out[0], getattr(attn, "to_add_out", None)):
                    if proj is not None:
                        self._handles.append(proj.register_forward_pre_hook(self._head_hook(gate, attn.heads)))
            else:
                self._handles.append(modules[gate.module].register_forward_hook(self._output_hook(gate)))
        return self

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _output_hook(self, gate: Gate):
        def hook(module, args, output):
            mask = self.current(gate)
            return output if mask is None else output * mask.to(output.dtype)

        return hook

    def _head_hook(self, gate: Gate, heads: int):
        def hook(module, args):
            mask = self.current(gate)
            if mask is None:
                return None
            x = args[0]
            shaped = x.unflatten(-1, (heads, x.shape[-1] // heads)) * mask.to(x.dtype)[:, None]
            return (shaped.flatten(-2), *args[1:])

        return hook
