"""Edits: save/load round trips, atomic writes, bad folders; the method registry; the negprompt baseline; the one
state object (``PipelineState``) applied edits keep on a pipeline."""

import json

import pytest
import torch

from erasekit.checksums import fingerprint
from erasekit.edits import MANIFEST, TENSORS, Edit
from erasekit.errors import InvalidEditError, UnknownMethodError, UnsupportedModelError
from erasekit.generate import call_kwargs, generate
from erasekit.methods import EraseRequest, apply_edit, available_methods, get_method, remove_edit
from erasekit.methods.gie import gie_sampler
from erasekit.pipeline_state import (
    STATE_ATTR,
    PipelineState,
    applied_edits,
    call_override,
    editing_state,
    existing_state,
    pipeline_state,
)


def _weight_edit(backbone, scale=0.5):
    name, param = backbone.parameters_of("xattn")[0]
    return Edit(
        kind="weight_delta",
        method="esd",
        config={},
        base_model="tiny",
        concepts=["star"],
        family=backbone.family,
        tensors={f"unet.{name}": param.detach() * scale},
        base_weights=fingerprint({f"unet.{name}": param}),
    )


def _rewrite(folder, **changes):
    """Change the manifest of an edit folder by hand; ``None`` drops a key."""
    manifest = json.loads((folder / MANIFEST).read_text()) | changes
    (folder / MANIFEST).write_text(json.dumps({k: v for k, v in manifest.items() if v is not None}))


def test_weight_delta_round_trip_and_apply(tiny_sd, tmp_path):
    edit = _weight_edit(tiny_sd)
    edit.save(tmp_path / "e")
    loaded = Edit.load(tmp_path / "e")
    assert loaded.kind == "weight_delta" and loaded.concepts == ["star"]
    ((key, value),) = loaded.tensors.items()
    torch.testing.assert_close(value, edit.tensors[key])
    name = key.split(".", 1)[1]
    apply_edit(loaded, tiny_sd.pipeline)
    torch.testing.assert_close(dict(tiny_sd.denoiser.named_parameters())[name].detach(), value)
    manifest = json.loads((tmp_path / "e" / MANIFEST).read_text())
    assert manifest["versions"]["diffusers"] and manifest["sha256"][TENSORS]


def test_save_refuses_to_overwrite_and_leaves_no_temporary_folders(tiny_sd, tmp_path):
    edit = _weight_edit(tiny_sd)
    edit.save(tmp_path / "e")
    with pytest.raises(FileExistsError):
        edit.save(tmp_path / "e")
    edit.save(tmp_path / "e", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e"]


def test_bad_edit_folders_fail_clearly(tiny_sd, tmp_path):
    with pytest.raises(InvalidEditError, match="no such directory"):
        Edit.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidEditError, match="no edit.json"):
        Edit.load(tmp_path / "empty")
    _weight_edit(tiny_sd).save(tmp_path / "partial")
    (tmp_path / "partial" / TENSORS).unlink()
    with pytest.raises(InvalidEditError, match="partial"):
        Edit.load(tmp_path / "partial")
    _weight_edit(tiny_sd).save(tmp_path / "damaged")
    (tmp_path / "damaged" / TENSORS).write_bytes(b"not safetensors")
    with pytest.raises(InvalidEditError, match="checksum"):
        Edit.load(tmp_path / "damaged")
    _weight_edit(tiny_sd).save(tmp_path / "pickled")
    (tmp_path / "pickled" / "weights.pt").write_bytes(b"\x80\x04")
    with pytest.raises(InvalidEditError, match="safetensors"):
        Edit.load(tmp_path / "pickled")
    (tmp_path / "badjson").mkdir()
    (tmp_path / "badjson" / MANIFEST).write_text("{")
    with pytest.raises(InvalidEditError, match="not valid JSON"):
        Edit.load(tmp_path / "badjson")


def test_weight_edit_for_another_model_is_rejected(tiny_sd, tiny_flux):
    edit = _weight_edit(tiny_sd)
    with pytest.raises(InvalidEditError, match="sd model"):
        apply_edit(edit, tiny_flux.pipeline)
    edit.tensors = {"unet.no.such.weight": torch.zeros(2)}
    with pytest.raises(InvalidEditError, match="does not have"):
        apply_edit(edit, tiny_sd.pipeline)


def test_registry():
    assert "negprompt" in available_methods()
    with pytest.raises(UnknownMethodError, match="available: .*negprompt"):
        get_method("no-such-method")
    with pytest.raises(ValueError, match="no setting"):
        get_method("negprompt").make_config({"learning_rate": 1})


def test_erase_request_validation():
    with pytest.raises(ValueError, match="at least one"):
        EraseRequest(targets=[" "])
    with pytest.raises(ValueError, match="anchor"):
        EraseRequest(targets=["star"], anchor="star")
    with pytest.raises(ValueError, match="both erased and preserved"):
        EraseRequest(targets=["star", "red"], preserve=["red"])
    assert EraseRequest(targets="star").targets == ["star"]


def test_negprompt_changes_generation_and_removes_cleanly(tiny_sd, tmp_path):
    method = get_method("negprompt")
    edit = method.erase(tiny_sd, EraseRequest(targets=["star"]))
    edit.save(tmp_path / "neg")
    edit = Edit.load(tmp_path / "neg")
    before = generate(tiny_sd, ["a red star"], [0], num_inference_steps=3)
    explicit = generate(tiny_sd, ["a red star"], [0], num_inference_steps=3, negative_prompt="star")
    apply_edit(edit, tiny_sd.pipeline)
    assert call_kwargs(tiny_sd.pipeline)["negative_prompt"] == "star"
    after = generate(tiny_sd, ["a red star"], [0], num_inference_steps=3)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, explicit)
    # A second edit composes; removing both restores the original output exactly.
    second = method.erase(tiny_sd, EraseRequest(targets=["striped"]))
    apply_edit(second, tiny_sd.pipeline)
    assert call_kwargs(tiny_sd.pipeline)["negative_prompt"] == "star, striped"
    remove_edit(second, tiny_sd.pipeline)
    remove_edit(edit, tiny_sd.pipeline)
    assert "negative_prompt" not in call_kwargs(tiny_sd.pipeline)
    torch.testing.assert_close(generate(tiny_sd, ["a red star"], [0], num_inference_steps=3), before)


def test_negprompt_on_flux_needs_true_cfg(tiny_flux):
    edit = get_method("negprompt").erase(tiny_flux, EraseRequest(targets=["star"]))
    apply_edit(edit, tiny_flux.pipeline)
    with pytest.raises(ValueError, match="guidance_scale > 1"):
        generate(tiny_flux, ["a red star"], [0], num_inference_steps=2, guidance_scale=1.0)
    images = generate(tiny_flux, ["a red star"], [0], num_inference_steps=2, guidance_scale=3.0)
    assert images.shape == (1, 3, 32, 32)


def test_generate_is_batch_independent(tiny_sd):
    prompts = ["a red star", "a blue circle", "a green heart"]
    one = generate(tiny_sd, prompts, [5, 6, 7], num_inference_steps=2, batch_size=1)
    three = generate(tiny_sd, prompts, [5, 6, 7], num_inference_steps=2, batch_size=3)
    torch.testing.assert_close(one, three, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="seeds"):
        generate(tiny_sd, prompts, [1], num_inference_steps=2)


def test_family_check_in_method(tiny_flux):
    method = get_method("negprompt")
    with pytest.raises(UnsupportedModelError):
        method.check_family("unet-xl")


def test_weight_edit_made_on_another_base_model_is_refused(tiny_sd, tmp_path):
    from erasekit.models import from_pipeline
    from erasekit.toy.pipelines import tiny_sd_pipeline

    _weight_edit(tiny_sd).save(tmp_path / "e")
    edit = Edit.load(tmp_path / "e")
    (key,) = edit.tensors
    other = from_pipeline(tiny_sd_pipeline(seed=1))  # the same architecture, other weights
    before = {n: p.detach().clone() for n, p in other.denoiser.named_parameters()}
    with pytest.raises(InvalidEditError, match=rf"made on tiny; the weights it replaces differ .*\({key}\)"):
        apply_edit(edit, other.pipeline)
    for n, p in other.denoiser.named_parameters():
        assert torch.equal(p, before[n]), n
    apply_edit(edit, tiny_sd.pipeline)
    with pytest.raises(InvalidEditError, match="do not stack"):
        apply_edit(edit, tiny_sd.pipeline)  # the first apply changed the values the edit was made on


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_weight_edit_applies_to_the_same_model_in_half_precision(tiny_sd, tmp_path, dtype):
    _weight_edit(tiny_sd).save(tmp_path / "e")
    edit = Edit.load(tmp_path / "e")
    ((key, value),) = edit.tensors.items()
    tiny_sd.pipeline.unet.to(dtype)
    apply_edit(edit, tiny_sd.pipeline)
    applied = dict(tiny_sd.pipeline.unet.named_parameters())[key.split(".", 1)[1]]
    assert applied.dtype == dtype and torch.equal(applied, value.to(dtype))


@pytest.mark.parametrize("lora_rank", [None, 2])
def test_fine_tuned_edits_fingerprint_the_base_weights_they_replace(tiny_sd, tmp_path, lora_rank):
    from erasekit.methods.training import FineTuner, FineTuneSettings
    from erasekit.models import from_pipeline
    from erasekit.toy.pipelines import tiny_sd_pipeline

    original = {f"unet.{n}": p.detach().clone() for n, p in tiny_sd.denoiser.named_parameters()}
    tuner = FineTuner(tiny_sd, "esd", FineTuneSettings(lr=1e-2, steps=1, lora_rank=lora_rank), ["star"])
    tuner.run(
        lambda t: (
            t.backward(t.predict(torch.randn(1, 4, 16, 16), 500, tiny_sd.encode(["a star"])).pow(2).mean()),
            {"loss": 0.0},
        )[1]
    )
    edit = tuner.make_edit()
    replaced = {k.split(".lora_")[0] + ".weight" for k in edit.tensors} if lora_rank else set(edit.tensors)
    assert set(edit.base_weights) == replaced
    assert edit.base_weights == fingerprint({k: original[k] for k in replaced})  # the values before training
    edit.save(tmp_path / "e")
    apply_edit(Edit.load(tmp_path / "e"), from_pipeline(tiny_sd_pipeline(seed=0)).pipeline)
    with pytest.raises(InvalidEditError, match="made on tiny-sd"):
        apply_edit(Edit.load(tmp_path / "e"), from_pipeline(tiny_sd_pipeline(seed=1)).pipeline)
    if lora_rank:  # LoRA edits stack: the base weights stay as they were
        stacked = from_pipeline(tiny_sd_pipeline(seed=0)).pipeline
        apply_edit(Edit.load(tmp_path / "e"), stacked)
        apply_edit(Edit.load(tmp_path / "e"), stacked)


def test_edit_methods_and_kinds_are_checked_at_apply(tiny_sd, tmp_path):
    edit = get_method("negprompt").erase(tiny_sd, EraseRequest(targets=["star"]))
    edit.save(tmp_path / "neg")
    _rewrite(tmp_path / "neg", method="no-such-method")
    with pytest.raises(InvalidEditError, match="'no-such-method', which this erasekit does not have"):
        apply_edit(Edit.load(tmp_path / "neg"), tiny_sd.pipeline)
    edit.kind = "mask_set"
    with pytest.raises(InvalidEditError, match="'negprompt', but that method makes inference_control edits"):
        apply_edit(edit, tiny_sd.pipeline)
    weights = _weight_edit(tiny_sd)
    weights.method = "negprompt"
    with pytest.raises(InvalidEditError, match="makes inference_control edits"):
        apply_edit(weights, tiny_sd.pipeline)


def test_manifests_are_checked_at_load(tiny_sd, tmp_path):
    _weight_edit(tiny_sd).save(tmp_path / "e")
    for kind in ("weight_delta", "mask_set"):
        _rewrite(tmp_path / "e", kind=kind, tensors=[])
        with pytest.raises(InvalidEditError, match=f"lists no tensors, but a {kind} edit is made of them"):
            Edit.load(tmp_path / "e")
    _weight_edit(tiny_sd).save(tmp_path / "e", overwrite=True)
    manifest = json.loads((tmp_path / "e" / MANIFEST).read_text())
    _rewrite(tmp_path / "e", sha256=None)
    with pytest.raises(InvalidEditError, match="has no checksum; the folder was not written by erasekit"):
        Edit.load(tmp_path / "e")
    (key,) = manifest["base_weights"]
    _rewrite(
        tmp_path / "e", sha256=manifest["sha256"], base_weights={key: manifest["base_weights"][key] | {"shape": [1, 2]}}
    )
    with pytest.raises(InvalidEditError, match="in another shape than edit.json records"):
        Edit.load(tmp_path / "e")
    _rewrite(tmp_path / "e", base_weights=None)
    with pytest.raises(InvalidEditError, match="no fingerprint of the base-model weights"):
        Edit.load(tmp_path / "e")
    _rewrite(tmp_path / "e", base_weights=manifest["base_weights"], format_version=3)
    with pytest.raises(InvalidEditError, match="edit format 3, which this erasekit"):
        Edit.load(tmp_path / "e")
    # A damaged tensors file whose checksum was recomputed: still an InvalidEditError, not safetensors' own.
    path = tmp_path / "e" / TENSORS
    path.write_bytes(path.read_bytes()[:-16])
    from erasekit.checksums import sha256_file as _sha256

    _rewrite(tmp_path / "e", format_version=2, sha256={TENSORS: _sha256(path)})
    with pytest.raises(InvalidEditError, match="not a readable safetensors file"):
        Edit.load(tmp_path / "e")


def test_format_1_edits_without_weights_still_load(tiny_sd, tmp_path):
    get_method("negprompt").erase(tiny_sd, EraseRequest(targets=["star"])).save(tmp_path / "neg")
    _rewrite(tmp_path / "neg", format_version=1, base_weights=None)
    apply_edit(Edit.load(tmp_path / "neg"), tiny_sd.pipeline)
    assert call_kwargs(tiny_sd.pipeline)["negative_prompt"] == "star"


# ------------------------------------------------------------------------------------------ pipeline state


def test_pipeline_state_is_one_attribute_created_on_first_use_and_gone_when_nothing_is_applied(tiny_sd):
    pipeline = tiny_sd.pipeline
    generate(tiny_sd, ["a red star"], [0], num_inference_steps=2)  # reading the state never creates it
    fresh = set(vars(pipeline))
    assert existing_state(pipeline) is None and applied_edits(pipeline) == [] and call_kwargs(pipeline) == {}
    state = pipeline_state(pipeline)
    assert isinstance(state, PipelineState) and state.empty and pipeline_state(pipeline) is state
    assert set(vars(pipeline)) == fresh | {STATE_ATTR}
    with editing_state(pipeline) as outer:
        with editing_state(pipeline) as inner:  # a method's block inside apply_edit's: the same object
            assert inner is outer is state
        outer.call_kwargs["negative_prompt"] = "star"  # the inner block dropped the empty state; this one keeps it
    assert existing_state(pipeline) is state and call_kwargs(pipeline) == {"negative_prompt": "star"}
    with editing_state(pipeline) as state:
        state.set_call_kwargs(negative_prompt=None)
    assert set(vars(pipeline)) == fresh


def test_a_refused_edit_leaves_no_state(tiny_sd, tiny_flux):
    fresh = set(vars(tiny_sd.pipeline))
    with pytest.raises(InvalidEditError):
        apply_edit(_weight_edit(tiny_flux), tiny_sd.pipeline)
    edit = Edit(
        kind="inference_control", method="gie", config={}, base_model="x", concepts=["star"], family="sd", data={}
    )  # neither adapter nor scale
    with pytest.raises(InvalidEditError, match="damaged"):
        apply_edit(edit, tiny_sd.pipeline)
    assert set(vars(tiny_sd.pipeline)) == fresh


def test_edits_of_several_methods_share_the_state_and_leave_nothing_once_removed(tiny_sd, tmp_path):
    pipeline = tiny_sd.pipeline
    before = generate(tiny_sd, ["a red star"], [0], num_inference_steps=2)
    fresh = set(vars(pipeline))
    gie = get_method("gie")
    gie.erase(tiny_sd, EraseRequest(targets=["star"]), gie.make_config({"scale": -4.0})).save(tmp_path / "gie")
    negatives = [get_method("negprompt").erase(tiny_sd, EraseRequest(targets=[c])) for c in ("star", "striped")]
    weights = _weight_edit(tiny_sd, scale=1.0)  # the weights' own values: a weight delta that changes nothing
    applied = [negatives[0], Edit.load(tmp_path / "gie"), weights, negatives[1]]
    for edit in applied:
        apply_edit(edit, pipeline)
    assert set(vars(pipeline)) == fresh | {STATE_ATTR}
    state = existing_state(pipeline)
    assert applied_edits(pipeline) == [e.summary() for e in applied]
    assert state.negative_prompts == ["star", "striped"]
    assert call_kwargs(pipeline) == {"negative_prompt": "star, striped"}
    assert call_override(pipeline) is gie_sampler(pipeline) is not None and state.things() == [gie_sampler(pipeline)]
    remove_edit(negatives[0], pipeline)
    assert call_kwargs(pipeline) == {"negative_prompt": "striped"}
    remove_edit(Edit.load(tmp_path / "gie"), pipeline)  # the same edit loaded again takes the sampler off
    assert gie_sampler(pipeline) is None and call_override(pipeline) is None and not state.installed
    remove_edit(negatives[1], pipeline)
    assert applied_edits(pipeline) == [weights.summary()]  # a weight delta stays applied: the state stays
    state.edits.clear()  # (pretend the weights were reloaded)
    with editing_state(pipeline):
        pass
    assert set(vars(pipeline)) == fresh
    torch.testing.assert_close(generate(tiny_sd, ["a red star"], [0], num_inference_steps=2), before)
