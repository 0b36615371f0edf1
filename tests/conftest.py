"""Shared fixtures. Tiny random pipelines are rebuilt for every test (tens of ms), so a test may edit them."""

from __future__ import annotations

import os

# Never reach for the network from the test suite; loaders must fail fast instead.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Progress bars would interleave with pytest's output; erasekit draws them unless told not to.
os.environ.setdefault("ERASEKIT_PROGRESS", "0")

import pytest  # noqa: E402


@pytest.fixture
def tiny_sd():
    """A random ε-prediction ``SDBackbone`` (32×32 images, DDIM) over ``toy.pipelines.tiny_sd_pipeline``."""
    from erasekit.models import from_pipeline
    from erasekit.toy.pipelines import tiny_sd_pipeline

    return from_pipeline(tiny_sd_pipeline(seed=0), name="tiny-sd")


@pytest.fixture
def tiny_flux():
    """A random ``FluxBackbone`` (32×32 images, flow-matching Euler) over ``toy.pipelines.tiny_flux_pipeline``."""
    from erasekit.models import from_pipeline
    from erasekit.toy.pipelines import tiny_flux_pipeline

    return from_pipeline(tiny_flux_pipeline(seed=0), name="tiny-flux")


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory):
    """A random 2-layer CLIP (32 px images, 16-d projection) with the toy tokenizer, saved like a hub folder."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from erasekit.toy.tokenizers import build_clip_tokenizer

    tokenizer = build_clip_tokenizer()
    layers = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    config = CLIPConfig(
        text_config=dict(
            layers,
            vocab_size=len(tokenizer),
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(layers, image_size=32, patch_size=8),
        projection_dim=16,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-clip")
    CLIPModel(config).save_pretrained(folder)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder
