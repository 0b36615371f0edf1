"""Stable Diffusion 1.x / 2.x (``StableDiffusionPipeline``: UNet2DConditionModel + CLIP + AutoencoderKL)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline
from diffusers.utils.torch_utils import randn_tensor
from torch import nn

from .base import Backbone, Conditioning, GenerationDefaults, SamplerState, as_timestep_tensor, broadcast_to

# UNet2DConditionModel registers its blocks as down, up, mid but runs them as down, mid, up.
_CALL_ORDER = {"down_blocks": 0, "mid_block": 1, "up_blocks": 2}
# What the official ESD and EraseDiff scripts leave out of ``noxattn`` besides ``attn2``: the CompVis UNet's
# ``time_embed`` (two linears) and ``out`` (GroupNorm + conv), in diffusers' names.
_NOXATTN_EXCLUDED = ("time_embedding", "conv_norm_out", "conv_out")


class SDBackbone(Backbone):
    """Backbone over a ``StableDiffusionPipeline``, ε- or v-prediction (read from ``scheduler.config``).

    The step-wise sampler is deterministic DDIM (η = 0) built from the pipeline scheduler's noise schedule,
    whatever scheduler class the pipeline carries (SD 1.4 ships PNDM); it reproduces ``pipeline(...)`` only
    when that scheduler is a ``DDIMScheduler``.

    Module groups (parameter names of the UNet):

    * ``xattn``: the cross-attention modules ``attn2`` of every transformer block (where text enters);
    * ``noxattn``: everything else;
    * ``ffn``: the feed-forward ``ff`` of every transformer block;
    * ``norm_modulation``: empty — SD's UNet has no adaptive (text- or time-modulated) norm linears; its time
      embedding enters the ResNets additively through ``time_emb_proj``, which stays in ``noxattn``.

    * ``noxattn``: the scope of the official ESD (``train-esd.py``) and EraseDiff (``erasediff_nsfw.py``) scripts —
      every parameter outside ``attn2`` except the time embedding ``time_embedding.linear_1/2`` and the output
      layers ``conv_norm_out`` and ``conv_out`` (CompVis ``time_embed.*`` and ``out.*``); ``conv_in``, every norm
      inside the blocks and the ResNets' ``time_emb_proj`` are in it. ``noxattn_all``: every parameter outside
      ``attn2`` (erasekit's ``noxattn`` before 0.2).

    Like ``StableDiffusionPipeline``, the VAE's ``shift_factor`` is ignored: latents are ``z * scaling_factor``.
    """

    family = "sd"

    def __init__(
        self, pipeline: StableDiffusionPipeline, name_or_path: str = "", defaults: GenerationDefaults | None = None
    ):
        super().__init__(pipeline, name_or_path, defaults)
        # A DDIM copy of the schedule, read for its constants (never stepped: its step() keeps state).
        self._schedule = DDIMScheduler.from_config(pipeline.scheduler.config)

    # ----------------------------------------------------------------------------------------- properties

    @property
    def denoiser(self) -> nn.Module:
        return self.pipeline.unet

    @property
    def prediction_type(self) -> str:
        return self.pipeline.scheduler.config.get("prediction_type", "epsilon")

    @property
    def tokenizer(self):
        return self.pipeline.tokenizer

    @property
    def text_length(self) -> int:
        return self.pipeline.tokenizer.model_max_length

    @property
    def num_train_timesteps(self) -> int:
        return self._schedule.config.num_train_timesteps

    @classmethod
    def fallback_defaults_for(cls, pipeline, toy: bool) -> GenerationDefaults:
        size = pipeline.unet.config.sample_size * pipeline.vae_scale_factor
        return GenerationDefaults(
            height=size, width=size, num_inference_steps=25 if toy else 50, guidance_scale=7.5, max_sequence_length=None
        )

    # ----------------------------------------------------------------------------------------------- text

    def encode(self, prompts: Sequence[str] | str) -> Conditioning:
        text_encoder = self.pipeline.text_encoder
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        inputs = self.tokenizer(
            prompts, padding="max_length", max_length=self.text_length, truncation=True, return_tensors="pt"
        )
        # Only some CLIP configs (e.g. SD 2's OpenCLIP port) were trained with a mask; mirror the pipeline.
        mask = None
        if getattr(text_encoder.config, "use_attention_mask", False):
            mask = inputs.attention_mask.to(text_encoder.device)
        embeds = text_encoder(inputs.input_ids.to(text_encoder.device), attention_mask=mask)[0]
        return Conditioning(embeds.to(device=self.device, dtype=text_encoder.dtype))

    # ------------------------------------------------------------------------------------------- denoiser

    def predict(self, latents, t, cond, denoiser=None):
        denoiser = denoiser if denoiser is not None else self.denoiser
        if isinstance(t, torch.Tensor):
            t = t.to(latents.device)
        cond = cond.expand_to(latents.shape[0])
        return denoiser(latents, t, encoder_hidden_states=cond.embeds, return_dict=False)[0]

    def random_timesteps(self, batch_size, generator=None):
        t = torch.randint(0, self.num_train_timesteps, (batch_size,), generator=generator)
        return t.to(self.device)

    def _alphas(self, t, x: torch.Tensor) -> torch.Tensor:
        t = as_timestep_tensor(t, x.shape[0], device="cpu", dtype=torch.long)
        return broadcast_to(self._schedule.alphas_cumprod[t].to(device=x.device, dtype=x.dtype), x)

    def add_noise(self, x0, noise, t):
        # DDPM's q(x_t | x0) = N(sqrt(a_t) x0, (1 - a_t) I), with a_t the cumulative product of alphas.
        alpha = self._alphas(t, x0)
        return alpha**0.5 * x0 + (1 - alpha) ** 0.5 * noise

    def training_target(self, x0, noise, t):
        if self.prediction_type == "epsilon":
            return noise
        if self.prediction_type == "v_prediction":
            alpha = self._alphas(t, x0)
            return alpha**0.5 * noise - (1 - alpha) ** 0.5 * x0
        raise NotImplementedError(f"prediction_type {self.prediction_type!r} is not supported.")

    # -------------------------------------------------------------------------------------------- sampler

    def prepare(self, batch_size, generator=None, num_inference_steps=None, height=None, width=None, latents=None):
        steps = num_inference_steps or self.defaults.num_inference_steps
        height, width = height or self.defaults.height, width or self.defaults.width
        scheduler = DDIMScheduler.from_config(self.pipeline.scheduler.config)
        scheduler.set_timesteps(steps)
        shape = (
            batch_size,
            self.denoiser.config.in_channels,
            height // self.vae_scale_factor,
            width // self.vae_scale_factor,
        )
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=self.device, dtype=self.dtype)
            latents = latents * scheduler.init_noise_sigma
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}.")
        return SamplerState(
            latents=latents,
            timesteps=[int(t) for t in scheduler.timesteps],
            scheduler=scheduler,
            height=height,
            width=width,
        )

    def step(self, state, cond, uncond=None, guidance_scale=None):
        if state.done:
            raise ValueError("The sampler has taken all its steps; decode `state.latents`.")
        scale = self._guidance(uncond, guidance_scale)
        x, t = state.latents, state.timesteps[state.index]
        batch = x.shape[0]
        if scale is None:
            pred = self.predict(x, t, cond)
        else:
            # One batched pass over [uncond, cond], like StableDiffusionPipeline (and bit-for-bit equal to it).
            both = self.predict(torch.cat([x, x]), t, uncond.expand_to(batch).cat(cond.expand_to(batch)))
            pred_uncond, pred_cond = both.chunk(2)
            pred = pred_uncond + scale * (pred_cond - pred_uncond)

        # DDIM (eta = 0), in the same expressions as DDIMScheduler.step, without its in-place state.
        sched = state.scheduler
        prev_t = t - sched.config.num_train_timesteps // sched.num_inference_steps
        alpha_t = sched.alphas_cumprod[t]
        alpha_prev = sched.alphas_cumprod[prev_t] if prev_t >= 0 else sched.final_alpha_cumprod
        alpha_t, alpha_prev = alpha_t.to(x.device), alpha_prev.to(x.device)
        beta_t = 1 - alpha_t
        if self.prediction_type == "epsilon":
            x0 = (x - beta_t**0.5 * pred) / alpha_t**0.5
            eps = pred
        elif self.prediction_type == "v_prediction":
            x0 = alpha_t**0.5 * x - beta_t**0.5 * pred
            eps = alpha_t**0.5 * pred + beta_t**0.5 * x
        else:
            raise NotImplementedError(f"prediction_type {self.prediction_type!r} is not supported.")
        if sched.config.thresholding:
            raise NotImplementedError("DDIM dynamic thresholding is not supported by the step-wise sampler.")
        if sched.config.clip_sample:
            x0 = x0.clamp(-sched.config.clip_sample_range, sched.config.clip_sample_range)
        x_prev = alpha_prev**0.5 * x0 + (1 - alpha_prev) ** 0.5 * eps
        return state.replace(latents=x_prev, index=state.index + 1, prediction=pred, denoised=x0)

    def decode(self, latents):
        vae = self.pipeline.vae
        images = vae.decode(latents / vae.config.scaling_factor, return_dict=False)[0]
        return (images * 0.5 + 0.5).clamp(0, 1)

    def encode_images(self, images, generator=None, mode=False):
        vae = self.pipeline.vae
        posterior = vae.encode(images.to(device=vae.device, dtype=vae.dtype) * 2 - 1).latent_dist
        latents = posterior.mode() if mode else posterior.sample(generator)
        return latents * vae.config.scaling_factor

    # ------------------------------------------------------------------------------------ layers & groups

    def cross_attention_layers(self) -> list[str]:
        names = [name for name, _ in self.denoiser.named_modules() if name.rsplit(".", 1)[-1] == "attn2"]
        # sorted() is stable, so the order inside each part of the UNet stays the registration (= call) order.
        return sorted(names, key=lambda name: _CALL_ORDER.get(name.split(".", 1)[0], 3))

    def _group_predicates(self):
        def xattn(name):
            return "attn2" in name.split(".")

        def ffn(name):
            parts = name.split(".")
            return "transformer_blocks" in parts and "ff" in parts

        return {"xattn": xattn, "ffn": ffn, "norm_modulation": lambda name: False}

    def _noxattn_excluded(self, name: str) -> bool:
        return name.split(".", 1)[0] in _NOXATTN_EXCLUDED
