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


# ------------------------------------------------------------------------------- inference controls in a loss


def inference_controls(backbone) -> dict:
    """The inference-time controls applied to ``backbone``'s pipeline that a white-box loss can follow:
    ``negative_prompt`` (a negative-prompt edit), ``sld`` (SLD's sampler). GIE's two-branch sampler has no
    one-step formula; an attack that must see the controls refuses it (``unsupported``)."""
    from ...methods.gie import gie_sampler
    from ...methods.sld.method import sld_sampler
    from ...pipeline_state import existing_state

    state = existing_state(backbone.pipeline)
    controls: dict = {}
    if state is None:
        return controls
    negative = state.call_kwargs.get("negative_prompt")
    if negative:
        controls["negative_prompt"] = negative if isinstance(negative, str) else ", ".join(negative)
    sampler = sld_sampler(backbone.pipeline)
    if sampler is not None:
        controls["sld"] = sampler
    if gie_sampler(backbone.pipeline) is not None:
        controls["unsupported"] = "GIE"
    return controls


def controlled_prediction(backbone, noisy, t, cond, guidance_scale: float, controls: dict) -> torch.Tensor:
    """One step's noise prediction of the edited pipeline as its sampler combines it: the conditional prediction
    when no control is applied (what weight and mask edits change); with a negative prompt, classifier-free
    guidance with it as the unconditional branch; with SLD, guidance with its safety term (SLD Eq. 3, warm-up
    passed, momentum at zero: the one-step form the released attack code uses)."""
    batch = noisy.shape[0]
    if not controls:
        return backbone.predict(noisy, t, cond.expand_to(batch))
    if "unsupported" in controls:
        from ...errors import InvalidEditError

        raise InvalidEditError(
            f"this attack's loss follows the inference controls it can write as one step; "
            f"{controls['unsupported']}'s sampler is not one of them (negative prompt and SLD are)"
        )
    with torch.no_grad():
        uncond = backbone.encode([controls.get("negative_prompt", "")]).expand_to(batch)
    text = backbone.predict(noisy, t, cond.expand_to(batch))
    base = backbone.predict(noisy, t, uncond)
    if "sld" not in controls:
        return base + guidance_scale * (text - base)
    from ...methods.sld.guidance import guided, safety_term

    sampler = controls["sld"]
    with torch.no_grad():
        safety_cond = backbone.encode([sampler.safety_concept]).expand_to(batch)
    safety = backbone.predict(noisy, t, safety_cond)
    values = dict(sampler.values) | {"sld_warmup_steps": 0}
    term, _ = safety_term(base, text, safety, None, 0, **values)
    return guided(base, text, term, guidance_scale)


def reference_prediction(reference, noisy, t, cond, guidance_scale: float, controls: dict) -> torch.Tensor:
    """What ``controlled_prediction`` is matched to on the unedited model: the conditional prediction, or with
    controls applied to the edited model, plain classifier-free guidance (the empty prompt unconditional)."""
    batch = noisy.shape[0]
    with torch.no_grad():
        text = reference.predict(noisy, t, cond.expand_to(batch))
        if not controls:
            return text
        base = reference.predict(noisy, t, reference.encode([""]).expand_to(batch))
        return base + guidance_scale * (text - base)
