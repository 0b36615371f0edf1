"""Edits: save/load round trips, atomic writes, bad folders; the method registry; the negprompt baseline."""

import json

import pytest
import torch

from erasekit.edits import MANIFEST, TENSORS, Edit
from erasekit.errors import InvalidEditError, UnknownMethodError, UnsupportedModelError
from erasekit.generate import call_kwargs, generate
from erasekit.methods import EraseRequest, available_methods, get_method


def _weight_edit(backbone, scale=0.5):
    name, param = backbone.parameters_of("xattn")[0]
    return Edit(kind="weight_delta", method="negprompt", config={}, base_model="tiny", concepts=["star"],
                family=backbone.family, tensors={f"unet.{name}": param.detach() * scale})


def test_weight_delta_round_trip_and_apply(tiny_sd, tmp_path):
    edit = _weight_edit(tiny_sd)
    edit.save(tmp_path / "e")
    loaded = Edit.load(tmp_path / "e")
    assert loaded.kind == "weight_delta" and loaded.concepts == ["star"]
    (key, value), = loaded.tensors.items()
    torch.testing.assert_close(value, edit.tensors[key])
    name = key.split(".", 1)[1]
    loaded.apply(tiny_sd.pipeline)
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
        edit.apply(tiny_flux.pipeline)
    edit.tensors = {"unet.no.such.weight": torch.zeros(2)}
    with pytest.raises(InvalidEditError, match="does not have"):
        edit.apply(tiny_sd.pipeline)


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
    edit.apply(tiny_sd.pipeline)
    assert call_kwargs(tiny_sd.pipeline)["negative_prompt"] == "star"
    after = generate(tiny_sd, ["a red star"], [0], num_inference_steps=3)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, explicit)
    # A second edit composes; removing both restores the original output exactly.
    second = method.erase(tiny_sd, EraseRequest(targets=["striped"]))
    second.apply(tiny_sd.pipeline)
    assert call_kwargs(tiny_sd.pipeline)["negative_prompt"] == "star, striped"
    second.remove(tiny_sd.pipeline)
    edit.remove(tiny_sd.pipeline)
    assert "negative_prompt" not in call_kwargs(tiny_sd.pipeline)
    torch.testing.assert_close(generate(tiny_sd, ["a red star"], [0], num_inference_steps=3), before)


def test_negprompt_on_flux_needs_true_cfg(tiny_flux):
    edit = get_method("negprompt").erase(tiny_flux, EraseRequest(targets=["star"]))
    edit.apply(tiny_flux.pipeline)
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
