"""The Backbone verbs over tiny random SD and FLUX pipelines, checked against diffusers' own pipelines."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import DDPMScheduler

from erasekit.errors import ModelNotFoundError, UnsupportedModelError
from erasekit.models import from_pipeline, load, loading, make_generators
from erasekit.toy.pipelines import tiny_sd_pipeline

PROMPTS = ["a red striped star", "a blue circle"]
SEEDS = [0, 1]


def _pipeline_images(backbone, **kwargs):
    with torch.no_grad():
        return backbone.pipeline(
            PROMPTS, generator=make_generators(SEEDS, len(PROMPTS)), output_type="pt", **kwargs
        ).images


# ------------------------------------------------------------------------------------------------ encode


def test_encode_shapes(tiny_sd, tiny_flux):
    cond = tiny_sd.encode(PROMPTS)
    assert cond.embeds.shape == (2, 77, 32) and cond.pooled is None and cond.text_ids is None

    cond = tiny_flux.encode(PROMPTS)
    assert cond.embeds.shape == (2, 32, 32)  # T5, max_sequence_length 32 for the toy tokenizer
    assert cond.pooled.shape == (2, 32) and cond.text_ids.shape == (32, 3)


def test_conditioning_helpers(tiny_flux):
    cond = tiny_flux.encode(PROMPTS)
    both = cond[0].cat(cond[1])
    torch.testing.assert_close(both.embeds, cond.embeds)
    torch.testing.assert_close(both.pooled, cond.pooled)
    assert len(cond[-1]) == 1 and len(cond.repeat(3)) == 6 and len(cond[0].expand_to(4)) == 4


def test_token_layout(tiny_sd, tiny_flux):
    assert tiny_sd.token_layout("a red star") == ["<|startoftext|>", "a</w>", "red</w>", "star</w>", "<|endoftext|>"]
    assert tiny_flux.token_layout("a red star")[-1] == "</s>"
    assert tiny_sd.tokenize(PROMPTS).shape == (2, 77)


# ----------------------------------------------------------------------------------------------- predict


@pytest.mark.parametrize("fixture, t", [("tiny_sd", 500), ("tiny_flux", 0.5)])
def test_predict_shapes(request, fixture, t):
    backbone = request.getfixturevalue(fixture)
    latents = torch.randn(2, 4, 16, 16)
    cond = backbone.encode(PROMPTS)
    with torch.no_grad():
        assert backbone.predict(latents, t, cond).shape == latents.shape
        # A batch of one conditioning broadcasts; per-sample timesteps are accepted.
        ts = torch.tensor([t, t])
        assert backbone.predict(latents, ts, cond[0]).shape == latents.shape


# ------------------------------------------------------------------------------------ sampler vs pipeline
# Our sampler repeats the pipelines' arithmetic (same draws, same batched CFG pass, same float32 scheduler
# expressions), so the images agree to float rounding — in practice bit for bit.


def test_sd_sample_matches_pipeline(tiny_sd):
    ours = tiny_sd.sample(PROMPTS, SEEDS, num_inference_steps=4, guidance_scale=7.5)
    ref = _pipeline_images(tiny_sd, num_inference_steps=4, guidance_scale=7.5)
    assert ours.shape == (2, 3, 32, 32) and 0 <= ours.min() and ours.max() <= 1
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)


def test_sd_v_prediction_matches_pipeline():
    backbone = from_pipeline(tiny_sd_pipeline(prediction_type="v_prediction"), name="tiny-sd-v")
    assert backbone.prediction_type == "v_prediction"
    ours = backbone.sample(PROMPTS, SEEDS, num_inference_steps=3, guidance_scale=3.0)
    ref = _pipeline_images(backbone, num_inference_steps=3, guidance_scale=3.0)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)


def test_flux_sample_matches_pipeline(tiny_flux):
    ours = tiny_flux.sample(PROMPTS, SEEDS, num_inference_steps=3)
    ref = _pipeline_images(
        tiny_flux, num_inference_steps=3, guidance_scale=1.0, height=32, width=32, max_sequence_length=32
    )
    assert ours.shape == (2, 3, 32, 32)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)


def test_flux_true_cfg_and_dynamic_shift_match_pipeline(tiny_flux):
    # FLUX.1-dev-like schedule: resolution-dependent shift of the sigmas.
    pipe = tiny_flux.pipeline
    pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, use_dynamic_shifting=True)
    ours = tiny_flux.sample(PROMPTS, SEEDS, num_inference_steps=3, guidance_scale=4.0, negative_prompt="a heart")
    ref = _pipeline_images(
        tiny_flux,
        num_inference_steps=3,
        true_cfg_scale=4.0,
        negative_prompt="a heart",
        height=32,
        width=32,
        max_sequence_length=32,
    )
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)


# -------------------------------------------------------------------------------------------- autograd


@pytest.mark.parametrize("fixture", ["tiny_sd", "tiny_flux"])
def test_step_is_differentiable(request, fixture):
    backbone = request.getfixturevalue(fixture)
    with torch.no_grad():
        cond, uncond = backbone.encode(PROMPTS), backbone.encode(["", ""])
    state = backbone.prepare(2, make_generators(SEEDS, 2), num_inference_steps=3)
    start = state.latents.requires_grad_(True)
    for _ in range(2):
        state = backbone.step(state, cond, uncond, guidance_scale=3.0)
    assert state.index == 2 and not state.done and state.denoised.shape == start.shape
    backbone.decode(state.latents).mean().backward()
    assert start.grad is not None and start.grad.abs().sum() > 0
    grads = [p.grad for _, p in backbone.parameters_of("xattn")]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0


def test_guidance_without_uncond_is_an_error(tiny_sd):
    state = tiny_sd.prepare(1, make_generators([0], 1), num_inference_steps=2)
    with pytest.raises(ValueError, match="uncond"):
        tiny_sd.step(state, tiny_sd.encode(["a star"]), guidance_scale=5.0)


# -------------------------------------------------------------------------------- training-time verbs


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_sd_add_noise_and_target_match_ddpm(prediction_type):
    backbone = from_pipeline(tiny_sd_pipeline(prediction_type=prediction_type))
    ddpm = DDPMScheduler.from_config(backbone.pipeline.scheduler.config)
    x0, noise, t = torch.randn(3, 4, 16, 16), torch.randn(3, 4, 16, 16), torch.tensor([0, 400, 999])
    torch.testing.assert_close(backbone.add_noise(x0, noise, t), ddpm.add_noise(x0, noise, t))
    expected = noise if prediction_type == "epsilon" else ddpm.get_velocity(x0, noise, t)
    torch.testing.assert_close(backbone.training_target(x0, noise, t), expected)


def test_flux_add_noise_and_target(tiny_flux):
    x0, noise = torch.randn(2, 4, 16, 16), torch.randn(2, 4, 16, 16)
    t = tiny_flux.random_timesteps(2, torch.Generator().manual_seed(0))
    assert ((0 <= t) & (t <= 1)).all()
    xt = tiny_flux.add_noise(x0, noise, t)
    # Moving along the target velocity for the remaining sigma lands on the noise.
    torch.testing.assert_close(xt + (1 - t.view(-1, 1, 1, 1)) * tiny_flux.training_target(x0, noise, t), noise)


@pytest.mark.parametrize("fixture", ["tiny_sd", "tiny_flux"])
def test_encode_images_shape(request, fixture):
    backbone = request.getfixturevalue(fixture)
    with torch.no_grad():
        latents = backbone.encode_images(torch.rand(2, 3, 32, 32), mode=True)
        assert latents.shape == (2, 4, 16, 16)
        assert backbone.decode(latents).shape == (2, 3, 32, 32)


# ---------------------------------------------------------------------------------- groups & attention


@pytest.mark.parametrize("fixture", ["tiny_sd", "tiny_flux"])
def test_module_groups_partition_full(request, fixture):
    backbone = request.getfixturevalue(fixture)
    groups = backbone.module_groups()
    full = set(groups["full"])
    assert full == {n for n, _ in backbone.denoiser.named_parameters()}
    assert set(groups["xattn"]) | set(groups["noxattn_all"]) == full
    assert not set(groups["xattn"]) & set(groups["noxattn_all"])
    assert set(groups["noxattn"]) <= set(groups["noxattn_all"])  # the official scripts' scope (issue 19.5)
    assert groups["xattn"] and groups["noxattn"] and groups["ffn"]
    assert set(groups["ffn"]) <= full and set(groups["norm_modulation"]) <= full
    assert bool(groups["norm_modulation"]) == (backbone.family == "flux")
    if backbone.family == "sd":
        assert all(".attn2." in n for n in groups["xattn"])
    else:
        assert all(n.split(".")[3] in ("add_q_proj", "add_k_proj", "add_v_proj", "to_add_out") for n in groups["xattn"])
    assert [n for n, _ in backbone.parameters_of("xattn")] == groups["xattn"]
    with pytest.raises(ValueError, match="xattn"):
        backbone.parameters_of("nope")


@pytest.mark.parametrize("fixture", ["tiny_sd", "tiny_flux"])
def test_cross_attention_layers_in_call_order(request, fixture):
    backbone = request.getfixturevalue(fixture)
    modules = dict(backbone.denoiser.named_modules())
    called = []
    hooks = [
        modules[name].register_forward_hook(lambda m, i, o, name=name: called.append(name))
        for name in backbone.cross_attention_layers()
    ]
    with torch.no_grad():
        backbone.predict(
            torch.randn(1, 4, 16, 16), 0.5 if backbone.family == "flux" else 500, backbone.encode(["a star"])
        )
    for hook in hooks:
        hook.remove()
    assert called == backbone.cross_attention_layers()


def test_attention_processors_roundtrip(tiny_sd):
    processors = tiny_sd.attention_processors()
    assert sum(".attn2." in name for name in processors) == len(tiny_sd.cross_attention_layers())
    tiny_sd.set_attention_processors(processors)
    assert tiny_sd.attention_processors().keys() == processors.keys()


# ------------------------------------------------------------------------------------------------- load


@pytest.mark.parametrize("fixture", ["tiny_sd", "tiny_flux"])
def test_save_and_load_roundtrip(request, fixture, tmp_path):
    backbone = request.getfixturevalue(fixture)
    backbone.pipeline.save_pretrained(tmp_path)
    (tmp_path / "erasekit.json").write_text(json.dumps({"num_inference_steps": 2, "guidance_scale": 2.0}))
    loaded = load(tmp_path, device="cpu")
    assert type(loaded) is type(backbone) and loaded.defaults.num_inference_steps == 2
    assert loaded.defaults.height == backbone.defaults.height
    torch.testing.assert_close(loaded.sample(PROMPTS[:1], 3), backbone.sample(PROMPTS[:1], 3, 2, 2.0))


def test_load_missing_toy_model(monkeypatch, tmp_path):
    monkeypatch.setattr(loading, "toy_weights_dir", lambda: tmp_path)
    with pytest.raises(ModelNotFoundError, match="erasekit toy train"):
        load("toy-sd", device="cpu")
    with pytest.raises(ModelNotFoundError, match="toy-flux"):
        load("toy-nonsense", device="cpu")


def test_load_non_diffusers_folder(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ModelNotFoundError, match="model_index.json"):
        load(tmp_path, device="cpu")
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline"}))
    with pytest.raises(UnsupportedModelError, match="StableDiffusionXLPipeline"):
        load(tmp_path, device="cpu")
    with pytest.raises(UnsupportedModelError):
        from_pipeline(object())
    with pytest.raises(ModelNotFoundError):
        load(tmp_path / "absent", device="cpu")


def test_load_unreachable_hub_fails_fast(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelNotFoundError, match="unreachable"):
        load("erasekit-tests/no-such-model", device="cpu")
