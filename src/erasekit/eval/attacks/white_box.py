"""What the gradient attacks share: token vectors written into the text encoder, frozen weights, the diffusion
loss."""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F


class EmbeddingOverride:
    """A forward hook on the text encoder's token embedding that writes given vectors at given positions."""

    def __init__(self, module: torch.nn.Module, positions: slice):
        self.positions = positions
        self.vectors: torch.Tensor | None = None
        self._handle = module.register_forward_hook(self._hook)

    def _hook(self, module, args, output):
        if self.vectors is None:
            return output
        output = output.clone()
        output[:, self.positions] = self.vectors.to(output.dtype)
        return output

    def remove(self) -> None:
        self._handle.remove()


@contextmanager
def frozen(*modules: torch.nn.Module):
    """No gradient into the modules' parameters for the duration; their own flags are restored afterwards."""
    params = [p for m in modules for p in m.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


def diffusion_loss(backbone, latents, cond, t, noise) -> torch.Tensor:
    batch = t.shape[0]
    x0 = latents.expand(batch, -1, -1, -1)
    noisy = backbone.add_noise(x0, noise, t)
    pred = backbone.predict(noisy, t, cond.expand_to(batch))
    return F.mse_loss(pred.float(), backbone.training_target(x0, noise, t).float())
