"""MCE: gates and hooks, the step-wise gradient, baking, importing released masks, the Edit, bad input."""

import pytest
import torch

import erasekit.methods.mce.method as mce_method
from erasekit.edits import Edit
from erasekit.errors import InvalidEditError, UnsupportedModelError
from erasekit.generate import generate
from erasekit.methods import EraseRequest, apply_edit, get_method, remove_edit
from erasekit.methods.mce import (
    MaskHooks,
    MCEConfig,
    bake,
    end_to_end_backward,
    find_gates,
    import_released_masks,
    mce_loss,
    merge_mask_edits,
    naive_backward,
    relaxed_mask,
)

PROMPTS = ["a red striped star", "a blue dotted circle"]


def _request():
    return EraseRequest(
        targets=["star"], prompts=["a red star", "a striped star"], preserve_prompts=["a blue circle", "a green square"]
    )


def _logits(gates, value=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {gate.key: (value + torch.randn(gate.units, generator=g)).requires_grad_(True) for gate in gates}


# --------------------------------------------------------------------------------------------------- gates


def test_flux_gates_cover_both_ffn_streams_and_the_text_modulation(tiny_flux):
    gates = find_gates(tiny_flux.denoiser, "flux")
    blocks = len(tiny_flux.denoiser.transformer_blocks)
    assert len(gates) == 3 * blocks
    assert {g.module.split(".", 2)[2] for g in gates} == {"ff.net.0", "ff_context.net.0", "norm1_context.linear"}
    inner = tiny_flux.denoiser.transformer_blocks[0].ff.net[0].proj.out_features
    assert gates[0].units == inner
    heads = find_gates(tiny_flux.denoiser, "flux", heads=True)
    assert sum(g.kind == "heads" for g in heads) == blocks


def test_unet_gates_follow_the_pattern_and_bad_models_are_refused(tiny_sd, tiny_flux):
    gates = find_gates(tiny_sd.denoiser, "sd")
    assert gates and all(g.module.endswith("ff.net.0") for g in gates)  # the GEGLU, not its projection
    linears = find_gates(tiny_sd.denoiser, "sd", unet_pattern=r".*attn2\.to_k$")  # a pattern may name linears
    assert linears and all(g.units == tiny_sd.denoiser.get_submodule(g.module).out_features for g in linears)
    with pytest.raises(UnsupportedModelError, match="matches"):
        find_gates(tiny_sd.denoiser, "sd", unet_pattern=r"nothing_here$")
    with pytest.raises(UnsupportedModelError, match="transformer_blocks"):
        find_gates(tiny_sd.denoiser, "flux")
    with pytest.raises(ValueError, match="beta"):
        MCEConfig(beta=-0.1)


def _unet_ffn(denoiser, gate):
    """The FeedForward a UNet FFN gate belongs to (wherever in it the gate sits)."""
    return denoiser.get_submodule(gate.module[: gate.module.index(".ff.") + len(".ff")])


def test_unet_ffn_gates_one_per_geglu_hidden_unit(tiny_sd):
    """One gate per GEGLU hidden unit (the input of ``ff.net[2]``), not one per row of its 2×-wide projection."""
    denoiser = tiny_sd.denoiser
    gates = find_gates(denoiser, "sd")
    for gate in gates:
        ff = _unet_ffn(denoiser, gate)
        assert gate.units == ff.net[2].in_features == ff.net[0].proj.out_features // 2
    # Switching one unit's gate off is zeroing that unit's hidden activation (the GEGLU output), nothing else.
    gate, unit = gates[0], 3
    ff = _unet_ffn(denoiser, gate)
    seen = {}
    ff.net[2].register_forward_pre_hook(lambda module, args: seen.setdefault("hidden", args[0].detach().clone()))
    x = torch.randn(2, 5, ff.net[0].proj.in_features, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = ff(x)
        hidden = seen.pop("hidden")
        mask = torch.ones(gate.units)
        mask[unit] = 0
        hooks = MaskHooks(denoiser, [gate], masks={gate.key: mask}).install()
        gated = ff(x)
        hooks.remove()
        zeroed = hidden.clone()
        zeroed[..., unit] = 0
        torch.testing.assert_close(seen["hidden"], zeroed)
        torch.testing.assert_close(gated, ff.net[2](zeroed))
        assert (gated - plain).abs().max() > 1e-6


@pytest.mark.parametrize("prune", [True, False])
def test_unet_bake_gives_the_masked_model(tiny_sd, prune):
    gates = find_gates(tiny_sd.denoiser, "sd")
    masks = _random_masks(gates)
    plain = generate(tiny_sd, PROMPTS, 0, num_inference_steps=3)
    hooks = MaskHooks(tiny_sd.denoiser, gates, masks=masks).install()
    masked = generate(tiny_sd, PROMPTS, 0, num_inference_steps=3)
    hooks.remove()
    assert (masked - plain).abs().max() > 1e-4
    removed = bake(tiny_sd.denoiser, gates, masks, prune=prune)
    torch.testing.assert_close(generate(tiny_sd, PROMPTS, 0, num_inference_steps=3), masked, atol=1e-5, rtol=0)
    for gate in gates:
        ff, kept = _unet_ffn(tiny_sd.denoiser, gate), int(masks[gate.key].sum())
        assert ff.net[2].in_features == (kept if prune else gate.units)
        assert ff.net[0].proj.out_features == 2 * ff.net[2].in_features
        assert removed[gate.key] == pytest.approx(1 - kept / gate.units)


def test_hard_concrete_saturates_at_the_bounds():
    u = torch.rand(1000)
    assert (relaxed_mask(torch.full((1000,), 3.2), u) == 1).all()
    assert (relaxed_mask(torch.full((1000,), -3.2), u) == 0).all()
    mid = relaxed_mask(torch.zeros(1000), u)
    assert 0.2 < mid.mean() < 0.8


def test_hooks_mask_outputs_and_remove_cleanly(tiny_flux):
    plain = generate(tiny_flux, PROMPTS, 0, num_inference_steps=3)
    gates = find_gates(tiny_flux.denoiser, "flux")
    ones = MaskHooks(tiny_flux.denoiser, gates, masks={g.key: torch.ones(g.units) for g in gates}).install()
    torch.testing.assert_close(generate(tiny_flux, PROMPTS, 0, num_inference_steps=3), plain)
    ones.remove()
    zeros = MaskHooks(tiny_flux.denoiser, gates, masks={g.key: torch.zeros(g.units) for g in gates}).install()
    assert (generate(tiny_flux, PROMPTS, 0, num_inference_steps=3) - plain).abs().max() > 1e-4
    zeros.remove()
    torch.testing.assert_close(generate(tiny_flux, PROMPTS, 0, num_inference_steps=3), plain)


# ------------------------------------------------------------------------------------------------ gradient


@pytest.mark.parametrize("guidance", [None, 3.0])
def test_stepwise_gradient_equals_naive_backprop(tiny_flux, guidance):
    backbone = tiny_flux
    gates = find_gates(backbone.denoiser, "flux")
    logits = _logits(gates)
    hooks = MaskHooks(backbone.denoiser, gates, logits).install()
    hooks.mode = "relaxed"
    with torch.no_grad():
        cond = backbone.encode(PROMPTS)
        uncond = backbone.encode([""]) if guidance else None
    state = backbone.prepare(2, generator=torch.Generator().manual_seed(0), num_inference_steps=2)
    target = torch.randn(state.latents.shape, generator=torch.Generator().manual_seed(1))
    concept = torch.tensor([True, False])
    noises = [hooks.draw_noise(torch.Generator().manual_seed(s)) for s in (2, 3)]

    def loss_fn(final):
        return mce_loss(final, target, concept, beta=0.5)

    loss_a = end_to_end_backward(backbone, state, cond, uncond, guidance, hooks, noises, loss_fn)
    stepwise = {k: v.grad.clone() for k, v in logits.items()}
    for v in logits.values():
        v.grad = None
    loss_b = naive_backward(backbone, state, cond, uncond, guidance, hooks, noises, loss_fn)
    hooks.remove()
    torch.testing.assert_close(loss_a, loss_b)
    assert any(g.abs().max() > 0 for g in stepwise.values())
    for k, v in logits.items():
        torch.testing.assert_close(stepwise[k], v.grad, rtol=1e-4, atol=1e-7)


# ---------------------------------------------------------------------------------------------- bake/import


def _random_masks(gates, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {gate.key: (torch.rand(gate.units, generator=g) > 0.4).float() for gate in gates}


@pytest.mark.parametrize("prune", [True, False])
def test_bake_gives_the_masked_model(tiny_flux, prune):
    gates = find_gates(tiny_flux.denoiser, "flux")
    masks = _random_masks(gates)
    hooks = MaskHooks(tiny_flux.denoiser, gates, masks=masks).install()
    masked = generate(tiny_flux, PROMPTS, 0, num_inference_steps=3)
    hooks.remove()
    removed = bake(tiny_flux.denoiser, gates, masks, prune=prune)
    torch.testing.assert_close(generate(tiny_flux, PROMPTS, 0, num_inference_steps=3), masked, atol=1e-5, rtol=0)
    ff = tiny_flux.denoiser.transformer_blocks[0].ff
    kept = int(masks[gates[0].key].sum())
    assert ff.net[0].proj.out_features == (kept if prune else gates[0].units)
    assert 0 < removed[gates[0].key] < 1


def test_import_released_mask_files(tiny_flux, tmp_path):
    gates = find_gates(tiny_flux.denoiser, "flux")
    ffn = [g for g in gates if g.group == "ffn"]
    norm = [g for g in gates if g.group == "norm"]
    ff_logits = [torch.randn(g.units, dtype=torch.bfloat16) for g in ffn]  # ff, ff_context per block
    norm_logits = [torch.randn(g.units, dtype=torch.bfloat16) for g in norm]
    torch.save(ff_logits, tmp_path / "ff.pt")
    torch.save(norm_logits, tmp_path / "norm.pt")
    masks = import_released_masks(gates, tmp_path / "ff.pt", tmp_path / "norm.pt")
    torch.testing.assert_close(masks[ffn[1].key], (ff_logits[1].float() > 0).float())
    torch.testing.assert_close(masks[norm[0].key], (norm_logits[0].float() > 0).float())
    torch.save(ff_logits[:-1], tmp_path / "short.pt")
    with pytest.raises(InvalidEditError, match="another model shape"):
        import_released_masks(gates, tmp_path / "short.pt", tmp_path / "norm.pt")
    torch.save({"not": _Unsafe()}, tmp_path / "evil.pt")  # a pickled class: refused, never run
    with pytest.raises(InvalidEditError, match="weights_only"):
        import_released_masks(gates, tmp_path / "evil.pt", tmp_path / "norm.pt")


class _Unsafe:
    pass


# -------------------------------------------------------------------------------------------- method/edit


def test_erase_round_trip_apply_remove_and_merge(tiny_flux, tmp_path):
    method = get_method("mce")
    config = method.make_config({"steps": 2, "sampler_steps": 2, "lr_ffn": 5.0, "lr_norm": 5.0, "guidance_scale": 1.0})
    edit = method.erase(tiny_flux, _request(), config)
    assert edit.kind == "mask_set" and edit.data["pruned_share"]["all ffn"] > 0
    edit.save(tmp_path / "e")
    loaded = Edit.load(tmp_path / "e")
    plain = generate(tiny_flux, PROMPTS, 0, num_inference_steps=3)
    apply_edit(loaded, tiny_flux.pipeline)
    masked = generate(tiny_flux, PROMPTS, 0, num_inference_steps=3)
    assert (masked - plain).abs().max() > 1e-4
    remove_edit(loaded, tiny_flux.pipeline)
    torch.testing.assert_close(generate(tiny_flux, PROMPTS, 0, num_inference_steps=3), plain)
    merged = merge_mask_edits([edit, edit])
    for k, v in edit.tensors.items():
        torch.testing.assert_close(merged.tensors[k], v * v)


def test_masks_for_another_model_shape_are_refused(tiny_flux, tiny_sd):
    method = get_method("mce")
    edit = method.erase(
        tiny_flux, _request(), method.make_config({"steps": 1, "sampler_steps": 1, "guidance_scale": 1.0})
    )
    edit.family = "sd"  # pretend, to get past the family check to the shape check
    with pytest.raises(InvalidEditError, match="another model shape"):
        apply_edit(edit, tiny_sd.pipeline)


def test_resume_continues_exactly(tiny_flux, tmp_path, monkeypatch):
    method = get_method("mce")
    config = method.make_config({"steps": 3, "sampler_steps": 2, "checkpoint_every": 1, "guidance_scale": 1.0})
    whole = method.erase(tiny_flux, _request(), config)

    calls = {"n": 0}
    real = mce_method.end_to_end_backward

    def dies_on_third(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    request = _request()
    request.workdir = str(tmp_path / "work")
    monkeypatch.setattr(mce_method, "end_to_end_backward", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        method.erase(tiny_flux, request, config)
    monkeypatch.setattr(mce_method, "end_to_end_backward", real)
    request.resume = True
    resumed = method.erase(tiny_flux, request, config)
    assert resumed.data["training"]["final_loss"] == pytest.approx(whole.data["training"]["final_loss"], rel=1e-6)
    for k, v in whole.tensors.items():
        torch.testing.assert_close(resumed.tensors[k], v)


def test_the_request_seed_drives_training_unless_the_config_names_one(tiny_flux):
    method = get_method("mce")

    def final_loss(request_seed, **settings):
        request = _request()
        request.seed = request_seed
        config = method.make_config({"steps": 2, "sampler_steps": 2, "guidance_scale": 1.0} | settings)
        training = method.erase(tiny_flux, request, config).data["training"]
        assert training["seed"] == settings.get("seed", request_seed)  # the edit records the seed it used
        return training["final_loss"]

    assert final_loss(0) == final_loss(0)
    assert final_loss(1) != final_loss(0)
    assert final_loss(0, seed=1) == final_loss(1)


def test_paired_neutral_samples_are_the_targets_on_the_same_noise(tiny_flux, monkeypatch):
    method = get_method("mce")
    config = method.make_config(
        {
            "steps": 1,
            "sampler_steps": 2,
            "batch_size": 4,
            "guidance_scale": 1.0,
            "target": "neutral_prompt",
            "neutral": "paired",
        }
    )
    # No preserve prompts: the paired mode takes its neutral samples from the targets.
    request = EraseRequest(
        targets=["star"], prompts=["a red star", "a striped star"], anchor_prompts=["a red circle", "a striped circle"]
    )
    encoded, seen = [], {}
    real_encode = tiny_flux.encode
    monkeypatch.setattr(tiny_flux, "encode", lambda prompts: encoded.append(list(prompts)) or real_encode(prompts))

    def capture(backbone, state, *args, **kwargs):
        seen["latents"] = state.latents.clone()
        return torch.zeros(())

    monkeypatch.setattr(mce_method, "end_to_end_backward", capture)
    method.erase(tiny_flux, request, config)
    prompts, targets = encoded[-2], encoded[-1]
    assert [p.replace("star", "circle") for p in prompts[:2]] == targets[:2]
    assert prompts[2:] == targets[2:] == targets[:2]
    torch.testing.assert_close(seen["latents"][2:], seen["latents"][:2])
    assert not torch.equal(seen["latents"][0], seen["latents"][1])  # fresh noise per pair
    with pytest.raises(ValueError, match="neutral"):
        MCEConfig(neutral="anchors")
    with pytest.raises(ValueError, match="neutral prompts"):
        method.erase(tiny_flux, request, method.make_config({"steps": 1, "sampler_steps": 1}))


def test_random_control_masks_match_the_edit_site_by_site(tiny_flux):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "scripts" / "mce_random_control.py"
    spec = importlib.util.spec_from_file_location("mce_random_control", path)
    control = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(control)
    gates = find_gates(tiny_flux.denoiser, "flux")
    masks = _random_masks(gates)
    draw = [control.random_like(masks, gates, sites, torch.Generator().manual_seed(1)) for sites in ("all", "ffn")]
    for gate in gates:
        off = int((masks[gate.key] == 0).sum())
        assert int((draw[0][gate.key] == 0).sum()) == off
        assert int((draw[1][gate.key] == 0).sum()) == (off if gate.group == "ffn" else 0)
    assert any(not torch.equal(draw[0][g.key], masks[g.key]) for g in gates)


# ------------------------------------------------------------------------------------------ FlowEdit target


def test_flow_edit_keeps_the_source_for_the_same_prompt_and_takes_one_step_by_the_formula(tiny_flux):
    from erasekit.methods.mce import flow_edit

    source = torch.randn(
        2, *tiny_flux.prepare(1, num_inference_steps=4).latents.shape[1:], generator=torch.Generator().manual_seed(0)
    )
    cond, other = tiny_flux.encode(PROMPTS), tiny_flux.encode(["a green square", "a yellow heart"])
    uncond = tiny_flux.encode([""])
    same = flow_edit(
        tiny_flux,
        source,
        cond,
        cond,
        uncond,
        steps=4,
        n_max=3,
        source_guidance=2.0,
        target_guidance=2.0,
        generator=torch.Generator().manual_seed(1),
    )
    torch.testing.assert_close(same, source)

    edited = flow_edit(
        tiny_flux,
        source,
        cond,
        other,
        uncond,
        steps=4,
        n_max=1,
        source_guidance=1.5,
        target_guidance=5.5,
        generator=torch.Generator().manual_seed(1),
    )
    schedule = tiny_flux.prepare(2, num_inference_steps=4, latents=source)
    sigma, sigma_next, t = schedule.sigmas[3], schedule.sigmas[4], schedule.timesteps[3]
    noise = torch.randn(source.shape, generator=torch.Generator().manual_seed(1))
    z = (1 - sigma) * source + sigma * noise  # at the first edited step the target point is the source point
    with torch.no_grad():
        delta = tiny_flux.velocity(z, t, other, uncond, 5.5) - tiny_flux.velocity(z, t, cond, uncond, 1.5)
    torch.testing.assert_close(edited, source + (sigma_next - sigma) * delta)
    assert (edited - source).abs().max() > 1e-4


def test_flow_edit_target_edits_the_original_image_of_the_concept_rows_only(tiny_flux, tiny_sd, monkeypatch):
    method = get_method("mce")
    config = method.make_config(
        {
            "steps": 1,
            "sampler_steps": 2,
            "batch_size": 4,
            "guidance_scale": 1.0,
            "target": "flow_edit",
            "edit_steps": 4,
            "edit_n_max": 2,
        }
    )
    request = EraseRequest(
        targets=["star"],
        prompts=["a red star", "a striped star"],
        anchor_prompts=["a red circle", "a striped circle"],
        preserve_prompts=["a blue circle", "a green square"],
    )
    calls, seen = [], {}
    real_edit = mce_method.flow_edit

    def spy(backbone, source, *args, **kwargs):
        calls.append((source.clone(), kwargs))
        out = real_edit(backbone, source, *args, **kwargs)
        seen["edited"] = out.clone()
        return out

    def capture(backbone, state, cond, uncond, guidance, hooks, noises, loss_fn):
        seen["loss_fn"] = loss_fn
        hooks.mode = "off"
        with torch.no_grad():
            seen["original"] = mce_method.rollout(backbone, state, cond, uncond, guidance)[-1].latents
        return torch.zeros(())

    monkeypatch.setattr(mce_method, "flow_edit", spy)
    monkeypatch.setattr(mce_method, "end_to_end_backward", capture)
    monkeypatch.setattr(mce_method, "mce_loss", lambda final, target, *a: seen.setdefault("target", target))
    method.erase(tiny_flux, request, config)
    seen["loss_fn"](seen["original"])
    ((source, kwargs),) = calls
    assert source.shape[0] == 2 and kwargs["steps"] == 4 and kwargs["n_max"] == 2
    # Hooks were off (masks all open) for the source, so it is the original model's output for the concept rows.
    torch.testing.assert_close(source, seen["original"][:2])
    torch.testing.assert_close(seen["target"][:2], seen["edited"])
    torch.testing.assert_close(seen["target"][2:], seen["original"][2:])

    with pytest.raises(ValueError, match="edit_n_max"):
        MCEConfig(target="flow_edit", edit_steps=4, edit_n_max=5)
    with pytest.raises(ValueError, match="flow-matching"):
        method.erase(tiny_sd, request, config)


def _distilled_flux(seed=1):
    """A tiny FLUX pipeline whose transformer embeds its guidance scale, as FLUX.1-dev does."""
    from diffusers import FluxPipeline, FluxTransformer2DModel

    from erasekit.toy.pipelines import tiny_flux_pipeline

    pipe = tiny_flux_pipeline(seed=seed)
    config = dict(pipe.transformer.config) | {"guidance_embeds": True}
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel.from_config(config).eval()
    return FluxPipeline(**(pipe.components | {"transformer": transformer}))


def test_flow_edit_gives_a_distilled_model_its_scales_as_embedded_guidance(tiny_flux):
    from erasekit.methods.mce import flow_edit
    from erasekit.models import from_pipeline

    editor = from_pipeline(_distilled_flux(), name="tiny-flux-dev")
    source = torch.randn(
        2, *tiny_flux.prepare(1, num_inference_steps=4).latents.shape[1:], generator=torch.Generator().manual_seed(0)
    )
    cond, other = editor.encode(PROMPTS), editor.encode(["a green square", "a yellow heart"])
    passes = []
    real_predict = editor.predict

    def spy(latents, t, c, denoiser=None, embedded_guidance=None):
        passes.append(embedded_guidance)
        return real_predict(latents, t, c, denoiser, embedded_guidance)

    editor.predict = spy
    edited = flow_edit(
        editor,
        source,
        cond,
        other,
        None,
        steps=4,
        n_max=1,
        source_guidance=1.5,
        target_guidance=5.5,
        generator=torch.Generator().manual_seed(1),
    )
    assert passes == [1.5, 5.5]  # one pass per velocity, no unconditional one
    editor.predict = real_predict
    schedule = editor.prepare(2, num_inference_steps=4, latents=source)
    sigma, sigma_next, t = schedule.sigmas[3], schedule.sigmas[4], schedule.timesteps[3]
    z = (1 - sigma) * source + sigma * torch.randn(source.shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        delta = editor.velocity(z, t, other, embedded_guidance=5.5) - editor.velocity(z, t, cond, embedded_guidance=1.5)
    torch.testing.assert_close(edited, source + (sigma_next - sigma) * delta)


def test_edit_model_edits_the_targets_and_bad_ones_are_refused(tiny_flux, tmp_path, monkeypatch):
    import json

    from erasekit.toy.pipelines import tiny_sd_pipeline

    _distilled_flux().save_pretrained(tmp_path / "dev")
    method = get_method("mce")
    settings = {
        "steps": 1,
        "sampler_steps": 2,
        "batch_size": 2,
        "guidance_scale": 1.0,
        "target": "flow_edit",
        "edit_steps": 3,
        "edit_n_max": 2,
        "edit_model": str(tmp_path / "dev"),
    }
    editors = []
    real_edit = mce_method.flow_edit

    def spy(backbone, source, source_cond, target_cond, uncond, **kwargs):
        editors.append(backbone)
        return real_edit(backbone, source, source_cond, target_cond, uncond, **kwargs)

    monkeypatch.setattr(mce_method, "flow_edit", spy)
    request = EraseRequest(
        targets=["star"], prompts=["a red star"], anchor_prompts=["a red circle"], preserve_prompts=["a blue circle"]
    )
    edit = method.erase(tiny_flux, request, method.make_config(settings))
    assert edit.kind == "mask_set"
    (editor,) = editors
    assert editor is not tiny_flux and editor.denoiser.config.guidance_embeds
    assert not any(p.requires_grad for p in editor.denoiser.parameters())

    with pytest.raises(ValueError, match="needs target 'flow_edit'"):
        MCEConfig(target="neutral_prompt", edit_model=str(tmp_path / "dev"))
    tiny_sd_pipeline(seed=0).save_pretrained(tmp_path / "sd")
    with pytest.raises(ValueError, match="flow-matching"):
        method.erase(tiny_flux, request, method.make_config(settings | {"edit_model": str(tmp_path / "sd")}))
    vae_config = tmp_path / "dev" / "vae" / "config.json"
    vae_config.write_text(json.dumps(json.loads(vae_config.read_text()) | {"scaling_factor": 0.5}))
    with pytest.raises(ValueError, match="latent space"):
        method.erase(tiny_flux, request, method.make_config(settings))
