"""Tiny random pipelines for tests: real diffusers pipelines, built from config in code, in milliseconds.

They have the toy models' structure (same builders, ``size="tiny"``) but random weights, so what they draw is
noise; they exist to check that the plumbing (encoding, sampling, saving, editing) is right.
"""

from __future__ import annotations

import torch
from diffusers import FluxPipeline, StableDiffusionPipeline

from . import architectures as arch
from .tokenizers import build_clip_tokenizer, build_t5_tokenizer


def tiny_sd_pipeline(seed: int = 0, prediction_type: str = "epsilon") -> StableDiffusionPipeline:
    """A random ``StableDiffusionPipeline`` (UNet + CLIP + VAE + DDIM) that makes 32×32 images.

    Args:
        seed: seeds the random initialisation, so two calls with the same seed build identical pipelines.
        prediction_type: ``"epsilon"`` or ``"v_prediction"``; set on the scheduler, which is where diffusers
            (and the backbone) read it from.
    """
    torch.manual_seed(seed)
    tokenizer = build_clip_tokenizer()
    text_encoder = arch.build_clip_text(len(tokenizer), "tiny", pad_token_id=tokenizer.pad_token_id)
    unet = arch.build_unet("tiny", prediction_type=prediction_type)
    vae = arch.build_vae("tiny")
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=arch.ddim_scheduler(prediction_type),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return _eval(pipe)


def tiny_flux_pipeline(seed: int = 0) -> FluxPipeline:
    """A random ``FluxPipeline`` (FluxTransformer2DModel + CLIP + T5 + VAE + flow-matching Euler), 32×32 images.

    The text encoders' hidden size (32) is the transformer's ``joint_attention_dim`` and
    ``pooled_projection_dim``.
    """
    torch.manual_seed(seed)
    tokenizer, tokenizer_2 = build_clip_tokenizer(), build_t5_tokenizer()
    text_encoder = arch.build_clip_text(len(tokenizer), "tiny", pad_token_id=tokenizer.pad_token_id)
    text_encoder_2 = arch.build_t5(len(tokenizer_2), "tiny")
    transformer = arch.build_flux_transformer("tiny")
    vae = arch.build_vae("tiny")
    pipe = FluxPipeline(
        scheduler=arch.flow_scheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )
    pipe.set_progress_bar_config(disable=True)
    return _eval(pipe)


def _eval(pipe):
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    return pipe


def tiny_scene_sd_pipeline(seed: int = 0) -> StableDiffusionPipeline:
    """A random toy-world-v2 ``StableDiffusionPipeline``: the v2 vocabulary, 64×64 images, a 4× autoencoder."""
    from .scenes import vocabulary

    torch.manual_seed(seed)
    tokenizer = build_clip_tokenizer(vocabulary())
    pipe = StableDiffusionPipeline(
        vae=arch.build_vae_v2("tiny"),
        text_encoder=arch.build_clip_text(len(tokenizer), "tiny", pad_token_id=tokenizer.pad_token_id),
        tokenizer=tokenizer,
        unet=arch.build_unet_v2("tiny"),
        scheduler=arch.ddim_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return _eval(pipe)


def tiny_scene_flux_pipeline(seed: int = 0) -> FluxPipeline:
    """A random toy-world-v2 ``FluxPipeline`` (the wide-FFN toy transformer class, the v2 T5 tokenizer)."""
    from .scenes import vocabulary

    torch.manual_seed(seed)
    tokenizer = build_clip_tokenizer(vocabulary())
    tokenizer_2 = build_t5_tokenizer(vocabulary(), max_length=48)
    pipe = FluxPipeline(
        scheduler=arch.flow_scheduler(),
        vae=arch.build_vae_v2("tiny"),
        text_encoder=arch.build_clip_text(len(tokenizer), "tiny", pad_token_id=tokenizer.pad_token_id),
        tokenizer=tokenizer,
        text_encoder_2=arch.build_t5(len(tokenizer_2), "tiny"),
        tokenizer_2=tokenizer_2,
        transformer=arch.build_flux_v2("tiny"),
    )
    pipe.set_progress_bar_config(disable=True)
    return _eval(pipe)
