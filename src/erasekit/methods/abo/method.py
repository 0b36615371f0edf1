"""All-but-One (Hong, Lee & Woo, AAAI 2024; arXiv 2312.12807) — RECONSTRUCTED FROM THE PAPER'S ABSTRACT.

The paper's method section and code are not public. What the abstract states: a surgical update of the
*classifier-guidance term* toward a user-chosen alternative concept, while constraining the drift of the
*unconditional score*. This module implements the reconstruction of ``shared/spec/methods.md`` §3.2, not the
authors' algorithm; its numbers are not the paper's.

For an ε-model, ε(x, c) = ε(x, ∅) + g(x, c) with g the implicit classifier's guidance term. With θ₀ frozen:

    L_guid = ‖[ε_θ(x_t, c_e) − ε_θ(x_t, ∅)] − g_tgt‖²,   g_tgt = ε_θ₀(x_t, c_a) − ε_θ₀(x_t, ∅)   (or 0)
    L_unc  = ‖ε_θ(x_t, ∅) − ε_θ₀(x_t, ∅)‖²
    L_keep = ‖ε_θ(x_t, c') − ε_θ₀(x_t, c')‖²  over prompts c' that must survive (optional)
    L      = L_guid + λ_u · L_unc + λ_k · L_keep

x_t is drawn from the frozen model's own sampling trajectories for the target prompts (generated once, before
training, so they are the original model's). The trajectories and every draw of the training loop follow one
seed: ``--set seed``, or else the request's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...edits import Edit
from ..base import EraseRequest, Method, register
from ..training import FineTuner
from .config import ABOConfig

RECONSTRUCTED = "reconstructed from the paper's abstract (All-but-One, AAAI 2024): not the authors' algorithm"


def guidance_loss(student_cond: torch.Tensor, student_uncond: torch.Tensor, target_guidance: torch.Tensor):
    """The guidance-term objective: only the difference ε(c_e) − ε(∅) is retargeted."""
    return F.mse_loss(student_cond - student_uncond, target_guidance)


@register
class AllButOne(Method):
    name = "abo"
    summary = "All-but-One: retarget the guidance term, hold the unconditional score (reconstruction)"
    notes = RECONSTRUCTED
    kind = "weight_delta"
    families = ("sd",)
    Config = ABOConfig

    def erase(self, backbone, request: EraseRequest, config: ABOConfig | None = None) -> Edit:
        self.check_family(backbone.family)
        config = config or self.make_config()
        prompts = request.target_prompts()
        alternatives = (
            None
            if config.zero_guidance or not (request.anchor or request.anchor_prompts)
            else request.paired_anchor_prompts("")
        )
        keep = request.keep_prompts()
        seed = config.resolve_seed(request.seed)
        with torch.no_grad():
            uncond = backbone.encode([""])
            # Before the tuner exists: a resumed run loads its half-trained weights there, and the pool must
            # come from the frozen model in every run.
            pool = self._trajectories(backbone, prompts, config, seed)
        tuner = FineTuner.for_request(backbone, self.name, config, request, seed=seed)

        def train_step(t: FineTuner) -> dict:
            pick = t.randint(len(pool["prompt_index"]), (config.batch_size,)).cpu()
            step_index = t.randint(config.sample_steps, (config.batch_size,)).cpu()
            x_t = pool["latents"][step_index, pick].to(backbone.device)
            steps = pool["timesteps"][step_index].to(backbone.device)
            chosen = [int(pool["prompt_index"][i]) for i in pick]
            with torch.no_grad():
                cond = backbone.encode(t.adversarial([prompts[i] for i in chosen]))
                e0_uncond = t.teacher_predict(x_t, steps, uncond)
                if alternatives is not None:
                    alt = backbone.encode([alternatives[i] for i in chosen])
                    g_tgt = t.teacher_predict(x_t, steps, alt) - e0_uncond
                else:
                    g_tgt = torch.zeros_like(e0_uncond)
            s_cond, s_uncond = t.predict(x_t, steps, cond), t.predict(x_t, steps, uncond)
            l_guid = guidance_loss(s_cond, s_uncond, g_tgt)
            l_unc = F.mse_loss(s_uncond, e0_uncond)
            loss = l_guid + config.uncond_weight * l_unc
            logs = {"L_guid": l_guid.detach(), "L_unc": l_unc.detach()}
            if config.keep_weight > 0 and keep:
                with torch.no_grad():
                    kc = backbone.encode([keep[int(i)] for i in t.randint(len(keep), (config.batch_size,))])
                    k0 = t.teacher_predict(x_t, steps, kc)
                l_keep = F.mse_loss(t.predict(x_t, steps, kc), k0)
                loss = loss + config.keep_weight * l_keep
                logs["L_keep"] = l_keep.detach()
            t.backward(loss)
            return logs

        tuner.run(train_step, f"{self.name}: {', '.join(request.targets)}")
        backbone.denoiser.requires_grad_(False)
        return tuner.make_edit(notes=RECONSTRUCTED, data={"alternative": request.anchor})

    @staticmethod
    def _trajectories(backbone, prompts, config: ABOConfig, seed: int) -> dict:
        """Every intermediate latent of ``config.trajectories`` frozen-model samples of the target prompts."""
        generator = torch.Generator().manual_seed(seed)
        index = torch.randint(0, len(prompts), (config.trajectories,), generator=generator)
        cond = backbone.encode([prompts[int(i)] for i in index])
        uncond = backbone.encode([""])
        state = backbone.prepare(config.trajectories, generator=generator, num_inference_steps=config.sample_steps)
        latents = []
        for _ in range(config.sample_steps):
            latents.append(state.latents.detach().cpu())
            state = backbone.step(state, cond, uncond, config.sample_guidance)
        timesteps = torch.as_tensor([int(t) if backbone.family == "sd" else float(t) for t in state.timesteps])
        return {"latents": torch.stack(latents), "timesteps": timesteps, "prompt_index": index}
