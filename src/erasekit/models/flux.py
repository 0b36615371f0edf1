"""FLUX.1 (``FluxPipeline``: FluxTransformer2DModel + CLIP (pooled) + T5 (per-token) + AutoencoderKL)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline
from diffusers.pipelines.flux.pipeline_flux import calculate_shift
from diffusers.utils.torch_utils import randn_tensor
from torch import nn

from .base import Backbone, Conditioning, GenerationDefaults, SamplerState, as_timestep_tensor, broadcast_to

# Parameter-name parts of the groups, as named in diffusers 0.42's FluxTransformerBlock /
# FluxSingleTransformerBlock.
_TEXT_PROJECTIONS = ("add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")
_DOUBLE_FFN = ("ff", "ff_context")
_SINGLE_FFN = ("proj_mlp", "proj_out")


class FluxBackbone(Backbone):
    """Backbone over a ``FluxPipeline`` (rectified flow: ``x_t = (1 - σ) x0 + σ ε``, velocity ``ε - x0``).

    ``t`` is σ in ``[0, 1]`` everywhere in this class, which is what the transformer takes (it multiplies by
    1000 itself). The step-wise sampler is the pipeline's: σ = linspace(1, 1/N, N) then 0, shifted as the
    scheduler config says (a resolution-dependent ``mu`` when ``use_dynamic_shifting``), Euler updates.

    Guidance: ``guidance_scale`` is *true* classifier-free guidance with an unconditional (or negative)
    conditioning, two passes per step — the pipeline's ``true_cfg_scale``. Guidance-distilled models
    (FLUX.1-dev, ``guidance_embeds=True``) also get the embedded guidance value ``embedded_guidance`` at every
    pass; schnell-like models (no guidance embedding) ignore it.

    Module groups (parameter names of the transformer):

    * ``xattn``: the text-side projections of the double (joint) blocks' attention,
      ``attn.add_q_proj / add_k_proj / add_v_proj / to_add_out`` — FLUX has no separate cross-attention; the
      single blocks attend over the concatenated text+image sequence with shared projections, so they stay in
      ``noxattn``, as do the text-side RMSNorms ``norm_added_q / norm_added_k``;
    * ``noxattn``: everything else;
    * ``ffn``: ``ff`` and ``ff_context`` of double blocks, ``proj_mlp`` and ``proj_out`` of single blocks
      (``proj_out`` maps the concatenation of attention and MLP outputs, so it is shared with attention);
    * ``norm_modulation``: the AdaLN linears ``norm1.linear`` and ``norm1_context.linear`` of double blocks and
      ``norm.linear`` of single blocks (the final ``norm_out.linear`` is left out).
    """

    family = "flux"

    def __init__(
        self,
        pipeline: FluxPipeline,
        name_or_path: str = "",
        defaults: GenerationDefaults | None = None,
        embedded_guidance: float = 3.5,
    ):
        super().__init__(pipeline, name_or_path, defaults)
        self.embedded_guidance = embedded_guidance

    # ----------------------------------------------------------------------------------------- properties

    @property
    def denoiser(self) -> nn.Module:
        return self.pipeline.transformer

    @property
    def prediction_type(self) -> str:
        return "flow"

    @property
    def tokenizer(self):
        return self.pipeline.tokenizer_2

    @property
    def text_length(self) -> int:
        return self.defaults.max_sequence_length or 512

    @property
    def num_train_timesteps(self) -> int:
        return self.pipeline.scheduler.config.num_train_timesteps

    @classmethod
    def fallback_defaults_for(cls, pipeline, toy: bool) -> GenerationDefaults:
        # The VAE's sample_size is the training resolution: 1024 for FLUX.1, 32 for the toy world.
        size = int(pipeline.vae.config.get("sample_size", 1024) or 1024)
        max_len = min(256, int(pipeline.tokenizer_2.model_max_length))
        return GenerationDefaults(
            height=size, width=size, num_inference_steps=4, guidance_scale=1.0, max_sequence_length=max_len
        )

    # ----------------------------------------------------------------------------------------------- text

    def encode(self, prompts: Sequence[str] | str) -> Conditioning:
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        clip, t5 = self.pipeline.text_encoder, self.pipeline.text_encoder_2
        # As FluxPipeline.encode_prompt: CLIP gives only the pooled vector, T5 the per-token sequence.
        clip_ids = self.pipeline.tokenizer(
            prompts,
            padding="max_length",
            max_length=self.pipeline.tokenizer_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        pooled = clip(clip_ids.to(clip.device), output_hidden_states=False).pooler_output
        embeds = t5(self.tokenize(prompts).to(t5.device), output_hidden_states=False)[0]
        text_ids = torch.zeros(embeds.shape[1], 3, device=self.device, dtype=clip.dtype)
        return Conditioning(
            embeds.to(device=self.device, dtype=t5.dtype), pooled.to(device=self.device, dtype=clip.dtype), text_ids
        )

    # ------------------------------------------------------------------------------------------- denoiser

    def predict(self, latents, t, cond, denoiser=None, embedded_guidance: float | None = None):
        """The transformer's velocity; ``embedded_guidance`` overrides ``self.embedded_guidance`` for this pass
        (guidance-distilled models only)."""
        denoiser = denoiser if denoiser is not None else self.denoiser
        b, c, h, w = latents.shape
        cond = cond.expand_to(b)
        packed = FluxPipeline._pack_latents(latents, b, c, h, w)
        image_ids = FluxPipeline._prepare_latent_image_ids(b, h // 2, w // 2, latents.device, latents.dtype)
        guidance = None
        if denoiser.config.guidance_embeds:
            value = self.embedded_guidance if embedded_guidance is None else embedded_guidance
            guidance = torch.full((b,), value, device=latents.device, dtype=torch.float32)
        out = denoiser(
            hidden_states=packed,
            timestep=as_timestep_tensor(t, b, latents.device, latents.dtype),
            guidance=guidance,
            pooled_projections=cond.pooled,
            encoder_hidden_states=cond.embeds,
            txt_ids=cond.text_ids,
            img_ids=image_ids,
            return_dict=False,
        )[0]
        return self._unpack(out, h, w)

    @staticmethod
    def _unpack(packed: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, _, channels = packed.shape
        x = packed.view(b, h // 2, w // 2, channels // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
        return x.reshape(b, channels // 4, h, w)

    def random_timesteps(self, batch_size, generator=None):
        return torch.rand(batch_size, generator=generator).to(self.device)

    def add_noise(self, x0, noise, t):
        sigma = broadcast_to(as_timestep_tensor(t, x0.shape[0], x0.device, x0.dtype), x0)
        return (1 - sigma) * x0 + sigma * noise

    def training_target(self, x0, noise, t):
        return noise - x0

    # -------------------------------------------------------------------------------------------- sampler

    def _latent_size(self, height: int, width: int) -> tuple[int, int]:
        # Latents are packed in 2x2 patches, so their sides must be even (FluxPipeline.prepare_latents).
        f = self.vae_scale_factor
        return 2 * (int(height) // (f * 2)), 2 * (int(width) // (f * 2))

    def prepare(self, batch_size, generator=None, num_inference_steps=None, height=None, width=None, latents=None):
        steps = num_inference_steps or self.defaults.num_inference_steps
        height, width = height or self.defaults.height, width or self.defaults.width
        h, w = self._latent_size(height, width)
        shape = (batch_size, self.denoiser.config.in_channels // 4, h, w)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=self.device, dtype=self.dtype)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}.")

        # The schedule exactly as FluxPipeline.__call__ builds it, on a private scheduler.
        config = self.pipeline.scheduler.config
        scheduler = FlowMatchEulerDiscreteScheduler.from_config(config)
        sigmas = np.linspace(1.0, 1 / steps, steps)
        if config.get("use_flow_sigmas", False):
            sigmas = None
        mu = calculate_shift(
            (h // 2) * (w // 2),
            config.get("base_image_seq_len", 256),
            config.get("max_image_seq_len", 4096),
            config.get("base_shift", 0.5),
            config.get("max_shift", 1.15),
        )
        scheduler.set_timesteps(steps if sigmas is None else None, sigmas=sigmas, mu=mu)
        # Python floats hold float32 values exactly, so these round-trip bit for bit.
        return SamplerState(
            latents=latents,
            timesteps=scheduler.timesteps.tolist(),
            scheduler=scheduler,
            sigmas=scheduler.sigmas.tolist(),
            height=height,
            width=width,
        )

    def velocity(
        self, latents, timestep, cond, uncond=None, guidance_scale=None, embedded_guidance: float | None = None
    ) -> torch.Tensor:
        """The (classifier-free guided) flow velocity at ``timestep`` (the schedule's unit, ``sigma * 1000``)."""
        scale = self._guidance(uncond, guidance_scale)
        # The pipeline feeds timestep / 1000 with timestep = sigma * 1000 in float32; do the same arithmetic.
        t = torch.tensor(timestep, dtype=torch.float32).to(latents.dtype) / 1000
        pred = self.predict(latents, t, cond, embedded_guidance=embedded_guidance)
        if scale is not None:
            pred_uncond = self.predict(latents, t, uncond, embedded_guidance=embedded_guidance)
            pred = pred_uncond + scale * (pred - pred_uncond)
        return pred

    def step(self, state, cond, uncond=None, guidance_scale=None):
        if state.done:
            raise ValueError("The sampler has taken all its steps; decode `state.latents`.")
        x, i = state.latents, state.index
        pred = self.velocity(x, state.timesteps[i], cond, uncond, guidance_scale)

        # Euler, as FlowMatchEulerDiscreteScheduler.step: upcast to float32, x + (sigma_next - sigma) * v.
        sigma = torch.tensor(state.sigmas[i], dtype=torch.float32, device=x.device)
        sigma_next = torch.tensor(state.sigmas[i + 1], dtype=torch.float32, device=x.device)
        x_prev = (x.to(torch.float32) + (sigma_next - sigma) * pred).to(pred.dtype)
        denoised = x - sigma.to(x.dtype) * pred
        return state.replace(latents=x_prev, index=i + 1, prediction=pred, denoised=denoised)

    def decode(self, latents):
        vae = self.pipeline.vae
        z = latents / vae.config.scaling_factor + vae.config.shift_factor
        images = vae.decode(z, return_dict=False)[0]
        return (images * 0.5 + 0.5).clamp(0, 1)

    def encode_images(self, images, generator=None, mode=False):
        vae = self.pipeline.vae
        posterior = vae.encode(images.to(device=vae.device, dtype=vae.dtype) * 2 - 1).latent_dist
        z = posterior.mode() if mode else posterior.sample(generator)
        return (z - vae.config.shift_factor) * vae.config.scaling_factor

    # ------------------------------------------------------------------------------------ layers & groups

    def cross_attention_layers(self) -> list[str]:
        """The joint-attention modules, double blocks then single blocks (the order of a forward pass)."""
        double = [f"transformer_blocks.{i}.attn" for i in range(len(self.denoiser.transformer_blocks))]
        single = [f"single_transformer_blocks.{i}.attn" for i in range(len(self.denoiser.single_transformer_blocks))]
        return double + single

    def _group_predicates(self):
        def parts(name):
            return name.split(".")

        def xattn(name):
            p = parts(name)
            return p[0] == "transformer_blocks" and len(p) > 3 and p[2] == "attn" and p[3] in _TEXT_PROJECTIONS

        def ffn(name):
            p = parts(name)
            if p[0] == "transformer_blocks":
                return len(p) > 2 and p[2] in _DOUBLE_FFN
            return p[0] == "single_transformer_blocks" and len(p) > 2 and p[2] in _SINGLE_FFN

        def norm_modulation(name):
            p = parts(name)
            if p[0] == "transformer_blocks":
                return len(p) > 3 and p[2] in ("norm1", "norm1_context") and p[3] == "linear"
            return p[0] == "single_transformer_blocks" and len(p) > 3 and p[2] == "norm" and p[3] == "linear"

        return {"xattn": xattn, "ffn": ffn, "norm_modulation": norm_modulation}
