"""SLD: the presets are diffusers' own, the guidance is diffusers' formula (by hand on one step, and end to end
against ``StableDiffusionPipelineSafe``), FLUX and unguided sampling are refused, and the control composes with
other edits on the pipeline-state mechanism."""

from __future__ import annotations

import inspect

import pytest
import torch

import erasekit.api as ek
from erasekit.config import InvalidSettingError
from erasekit.errors import InvalidArgumentError, InvalidEditError, UnsupportedModelError
from erasekit.generate import generate
from erasekit.methods import apply_edit, get_method, remove_edit
from erasekit.methods.sld import PRESETS, SafeLatentSampler, SLDConfig, sld_sampler

SAFE_MODULE = "diffusers.pipelines.deprecated.stable_diffusion_safe"
KEYS = ("sld_warmup_steps", "sld_guidance_scale", "sld_threshold", "sld_momentum_scale", "sld_mom_beta")


def test_presets_are_diffusers_safety_configs():
    safe = pytest.importorskip(SAFE_MODULE)
    for name in ("weak", "medium", "strong", "max"):
        theirs = getattr(safe.SafetyConfig, name.upper())
        assert set(theirs) == set(KEYS)
        assert PRESETS[name] == theirs, name
        assert SLDConfig(preset=name).values() == theirs


def test_the_default_preset_is_the_one_diffusers_samples_with():
    safe = pytest.importorskip(SAFE_MODULE)
    parameters = inspect.signature(safe.StableDiffusionPipelineSafe.__call__).parameters
    assert SLDConfig().preset == "medium"
    assert SLDConfig().values() == {key: parameters[key].default for key in KEYS}


def test_settings_win_over_the_preset_and_bad_ones_are_refused():
    config = SLDConfig(preset="strong", sld_warmup_steps=0)
    assert config.values() == PRESETS["strong"] | {"sld_warmup_steps": 0}
    assert SLDConfig(**vars(config)) == config  # what a manifest holds rebuilds the same config
    with pytest.raises(InvalidSettingError, match="preset must be one of"):
        SLDConfig(preset="extreme")
    with pytest.raises(InvalidSettingError, match="sld_guidance_scale must be > 1"):
        SLDConfig(sld_guidance_scale=1.0)
    with pytest.raises(InvalidSettingError, match="sld_mom_beta"):
        SLDConfig(sld_mom_beta=1.5)


def _capture(pipe):
    """Hooks registered before SLD's: the UNet's raw output and what the scheduler is stepped with."""
    raw, stepped = [], []
    handle = pipe.unet.register_forward_hook(lambda m, a, o: raw.append(o[0].detach().clone()))
    step = pipe.scheduler.step

    def recording_step(noise_pred, *args, **kwargs):
        stepped.append(noise_pred.detach().clone())
        return step(noise_pred, *args, **kwargs)

    pipe.scheduler.step = recording_step
    return raw, stepped, handle


def test_guidance_is_diffusers_formula_step_by_step(tiny_sd):
    values = SLDConfig(sld_warmup_steps=1).values()
    pipe = tiny_sd.pipeline
    raw, stepped, handle = _capture(pipe)
    sampler = SafeLatentSampler(pipe, "star", values)
    g = 7.5
    sampler(
        ["a photo of a red circle"],
        generator=torch.Generator().manual_seed(0),
        num_inference_steps=3,
        guidance_scale=g,
        output_type="pt",
    )
    handle.remove()
    assert [r.shape[0] for r in raw] == [3, 3, 3]  # one pass over [uncond, prompt, safety] per step
    momentum = None
    for i, (out, noise_pred) in enumerate(zip(raw, stepped)):
        # StableDiffusionPipelineSafe.__call__, written out.
        uncond, text, safety = out.chunk(3)
        guidance = text - uncond
        scale = torch.clamp(torch.abs(text - safety) * values["sld_guidance_scale"], max=1.0)
        scale = torch.where(text - safety >= values["sld_threshold"], torch.zeros_like(scale), scale)
        term = (safety - uncond) * scale
        momentum = torch.zeros_like(guidance) if momentum is None else momentum
        term = term + values["sld_momentum_scale"] * momentum
        momentum = values["sld_mom_beta"] * momentum + (1 - values["sld_mom_beta"]) * term
        if i >= values["sld_warmup_steps"]:
            guidance = guidance - term
        expected = uncond + g * guidance
        torch.testing.assert_close(noise_pred, expected, rtol=1e-5, atol=1e-5)
        if i < values["sld_warmup_steps"]:
            torch.testing.assert_close(noise_pred, uncond + g * (text - uncond), rtol=1e-5, atol=1e-5)
        else:
            assert not torch.allclose(noise_pred, uncond + g * (text - uncond))
    assert not pipe.unet._forward_hooks and not pipe.unet._forward_pre_hooks, "SLD's hooks outlived the call"


def test_images_equal_stable_diffusion_pipeline_safe(tiny_sd):
    safe = pytest.importorskip(SAFE_MODULE)
    pipe = tiny_sd.pipeline
    reference = safe.StableDiffusionPipelineSafe(
        **{k: pipe.components[k] for k in ("vae", "text_encoder", "tokenizer", "unet", "scheduler")},
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    reference.set_progress_bar_config(disable=True)
    reference.safety_concept = "star, striped"
    for name in ("medium", "max"):
        values = SLDConfig(preset=name, sld_warmup_steps=1).values()
        kwargs = dict(num_inference_steps=4, guidance_scale=6.0, height=64, width=64)
        theirs = reference(
            ["a red star", "a blue circle"],
            generator=torch.Generator().manual_seed(3),
            output_type="np",
            **kwargs,
            **values,
        ).images
        ours = SafeLatentSampler(pipe, "star, striped", values)(
            ["a red star", "a blue circle"], generator=torch.Generator().manual_seed(3), output_type="np", **kwargs
        ).images
        plain = pipe(
            ["a red star", "a blue circle"], generator=torch.Generator().manual_seed(3), output_type="np", **kwargs
        ).images
        assert abs(ours - theirs).max() < 1e-4, name
        assert abs(ours - plain).max() > 1e-3, name


def test_the_edit_applies_composes_and_comes_off(tiny_sd):
    edit = ek.erase(tiny_sd, "sld", ["star", "striped"], settings={"sld_warmup_steps": 0})
    assert edit.kind == "inference_control" and edit.data["safety_concept"] == "star, striped"
    prompts, seeds = ["a photo of a red star"], [0]
    plain = generate(tiny_sd, prompts, seeds, num_inference_steps=2)
    apply_edit(edit, tiny_sd.pipeline)
    assert sld_sampler(tiny_sd.pipeline) is not None
    alone = generate(tiny_sd, prompts, seeds, num_inference_steps=2)
    assert not torch.equal(alone, plain)
    with pytest.raises(InvalidEditError, match="already applied"):
        apply_edit(edit, tiny_sd.pipeline)
    # A negative prompt goes through the pipeline's own call, under the same SLD guidance.
    negative = ek.erase(tiny_sd, "negprompt", ["circle"])
    apply_edit(negative, tiny_sd.pipeline)
    both = generate(tiny_sd, prompts, seeds, num_inference_steps=2)
    assert not torch.equal(both, alone)
    remove_edit(negative, tiny_sd.pipeline)
    torch.testing.assert_close(generate(tiny_sd, prompts, seeds, num_inference_steps=2), alone)
    # A GIE sampler cannot run under SLD (both replace the sampler): refused, the pipeline untouched.
    gie = ek.erase(tiny_sd, "gie", ["star"], settings={"scale": -2.0})
    with pytest.raises(InvalidEditError, match=r"another edit \(sld\) already replaces this pipeline's sampler"):
        apply_edit(gie, tiny_sd.pipeline)
    remove_edit(edit, tiny_sd.pipeline)
    assert sld_sampler(tiny_sd.pipeline) is None
    assert torch.equal(generate(tiny_sd, prompts, seeds, num_inference_steps=2), plain)
    apply_edit(gie, tiny_sd.pipeline)
    with pytest.raises(InvalidEditError, match=r"another edit \(gie\) already replaces this pipeline's sampler"):
        apply_edit(edit, tiny_sd.pipeline)


def test_no_change_before_the_warm_up_ends(tiny_sd):
    edit = ek.erase(tiny_sd, "sld", ["star"], settings={"sld_warmup_steps": 5})
    plain = generate(tiny_sd, ["a red star"], [0], num_inference_steps=3)
    apply_edit(edit, tiny_sd.pipeline)
    torch.testing.assert_close(generate(tiny_sd, ["a red star"], [0], num_inference_steps=3), plain, atol=1e-5, rtol=0)


def test_flux_and_unguided_sampling_are_refused(tiny_sd, tiny_flux):
    with pytest.raises(UnsupportedModelError, match="flux.*classifier-free guidance"):
        ek.erase(tiny_flux, "sld", ["star"])
    with pytest.raises(UnsupportedModelError, match="flux"):
        get_method("sld").check_family("flux")
    apply_edit(ek.erase(tiny_sd, "sld", ["star"]), tiny_sd.pipeline)
    with pytest.raises(InvalidArgumentError, match="guidance scale > 1"):
        generate(tiny_sd, ["a red star"], [0], num_inference_steps=2, guidance_scale=1.0)
