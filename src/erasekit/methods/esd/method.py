"""ESD — Erasing Concepts from Diffusion Models (Gandikota et al., ICCV 2023): the standard baseline.

The fine-tuned model's prediction for the concept is pulled toward negative guidance away from it:

    ε_θ(x_t, c)  →  ε*(x_t, ∅) − η · (ε*(x_t, c) − ε*(x_t, ∅))

with ε* the frozen model. x_t comes from the model's own sampling trajectory for the concept prompt, stopped at
a random step (as in the released code, the trajectory uses the model being trained). ``esd-x`` trains the
cross-attention (for styles and objects), ``esd-u`` the module group ``noxattn`` (for broad concepts such as
nudity): as the released ``train-esd.py``, everything outside cross-attention but the time embedding and the
output layers (``conv_norm_out``, ``conv_out``); ``--set train_method=noxattn_all`` trains those too.

Every draw (prompts, noise, stopping steps) comes from the engine's generator, seeded by ``--set seed`` or else
the request's seed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...edits import Edit
from ..base import EraseRequest, Method, register
from ..training import FineTuner
from .config import ESDConfig


def sample_partial_trajectory(
    backbone, tuner: FineTuner, cond, uncond, steps: int, guidance: float, batch_size: int, max_index: int | None = None
):
    """Run the sampler (current weights, no grad) from fresh noise to a random step; return (x_t, t)."""
    stop = int(torch.randint(0, max_index or steps, (1,), generator=tuner.generator))
    state = backbone.prepare(batch_size, generator=tuner.generator, num_inference_steps=steps)
    with torch.no_grad():
        for _ in range(stop):
            state = backbone.step(state, cond, uncond, guidance)
    t = state.timesteps[stop]
    return state.latents.detach(), t


def esd_loss(
    student: torch.Tensor, teacher_cond: torch.Tensor, teacher_uncond: torch.Tensor, eta: float
) -> torch.Tensor:
    """ESD's objective as a pure function of the three predictions."""
    target = teacher_uncond - eta * (teacher_cond - teacher_uncond)
    return F.mse_loss(student, target)


class _ESDBase(Method):
    kind = "weight_delta"
    families = ("sd",)
    Config = ESDConfig
    default_train_method = "xattn"

    def default_overrides(self):
        return {"train_method": self.default_train_method}

    def erase(self, backbone, request: EraseRequest, config: ESDConfig | None = None) -> Edit:
        self.check_family(backbone.family)
        config = config or self.make_config()
        prompts = request.target_prompts()
        tuner = FineTuner.for_request(backbone, self.name, config, request)
        with torch.no_grad():
            uncond = backbone.encode([""])

        def train_step(t: FineTuner) -> dict:
            batch = t.adversarial([prompts[int(i)] for i in t.randint(len(prompts), (config.batch_size,))])
            with torch.no_grad():
                cond = backbone.encode(batch)
            x_t, step_t = sample_partial_trajectory(
                backbone, t, cond, uncond, config.sample_steps, config.sample_guidance, config.batch_size
            )
            e0 = t.teacher_predict(x_t, step_t, uncond)
            ep = t.teacher_predict(x_t, step_t, cond)
            loss = esd_loss(t.predict(x_t, step_t, cond), ep, e0, config.negative_guidance)
            t.backward(loss)
            return {"loss": loss.detach()}

        tuner.run(train_step, f"{self.name}: {', '.join(request.targets)}")
        backbone.denoiser.requires_grad_(False)
        return tuner.make_edit()


@register
class ESDX(_ESDBase):
    name = "esd-x"
    summary = "ESD on cross-attention: negative guidance toward the unconditional prediction (baseline)"
    default_train_method = "xattn"


@register
class ESDU(_ESDBase):
    name = "esd-u"
    summary = "ESD outside cross-attention, time embedding and output layers (baseline, for broad concepts)"
    default_train_method = "noxattn"


@register
class ESD(_ESDBase):
    name = "esd"
    summary = "ESD with the group chosen by train_method (default cross-attention)"
    default_train_method = "xattn"
    alias_of = "esd-x"
