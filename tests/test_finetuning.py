"""The fine-tuning engine and the methods on it (ESD, EraseDiff, All-but-One), on tiny random pipelines."""

import copy
import json
from dataclasses import replace

import pytest
import torch

from erasekit.edits import Edit, export_pipeline
from erasekit.methods import EraseRequest, apply_edit, get_method
from erasekit.methods.erasediff.method import adaptive_lambda
from erasekit.methods.esd.method import esd_loss
from erasekit.methods.training import FineTuner, FineTuneSettings, ResumeMismatchError, TrainingDivergedError

REQUEST = dict(
    targets=["star"],
    prompts=["a red star", "a blue star"],
    preserve_prompts=["a red circle"],
    anchor_prompts=["a red square", "a blue heart"],
)


def _settings(**kw):
    return FineTuneSettings(**({"lr": 1e-3, "steps": 4, "batch_size": 2, "checkpoint_every": 2} | kw))


def _toy_step(backbone):
    cond = backbone.encode(["a red star"])

    def step(t: FineTuner):
        x = t.randn(2, 4, 16, 16)
        steps = backbone.random_timesteps(2, generator=t.generator)
        loss = (t.predict(x, steps, cond) - t.teacher_predict(x, steps, cond) - 0.1).pow(2).mean()
        t.backward(loss)
        return {"loss": loss.detach()}

    return step


def _trained(tuner):
    return {n: p.detach().clone() for n, p in tuner.trainable.items()}


def test_resume_gives_the_same_result_as_an_uninterrupted_run(tmp_path):
    from erasekit.models import from_pipeline
    from erasekit.toy.pipelines import tiny_sd_pipeline

    straight = FineTuner(from_pipeline(tiny_sd_pipeline()), "test", _settings(), ["star"], tmp_path / "a")
    straight.run(_toy_step(straight.backbone))

    class Interrupt(Exception):
        pass

    first = FineTuner(from_pipeline(tiny_sd_pipeline()), "test", _settings(), ["star"], tmp_path / "b")
    inner = _toy_step(first.backbone)

    def interrupted(t):
        if t.step == 3:
            raise Interrupt
        return inner(t)

    with pytest.raises(Interrupt):
        first.run(interrupted)
    resumed = FineTuner(from_pipeline(tiny_sd_pipeline()), "test", _settings(), ["star"], tmp_path / "b", resume=True)
    assert resumed.step == 2
    resumed.run(_toy_step(resumed.backbone))
    for name, value in _trained(straight).items():
        torch.testing.assert_close(_trained(resumed)[name], value)


def test_resume_from_another_method_is_refused(tiny_sd, tmp_path):
    tuner = FineTuner(tiny_sd, "esd", _settings(steps=2), ["star"], tmp_path)
    tuner.run(_toy_step(tiny_sd))
    with pytest.raises(ResumeMismatchError, match="esd run"):
        FineTuner(tiny_sd, "erasediff", _settings(steps=2), ["star"], tmp_path, resume=True)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_sd, tmp_path):
    tuner = FineTuner(tiny_sd, "test", _settings(), ["star"], tmp_path)
    good = _toy_step(tiny_sd)

    def step(t):
        return good(t) if t.step < 2 else {"loss": torch.tensor(float("nan"))}

    with pytest.raises(TrainingDivergedError, match="last good checkpoint"):
        tuner.run(step)
    assert json.loads((tmp_path / "checkpoint" / "trainer.json").read_text())["step"] == 2


def test_teacher_is_the_original_model_without_a_copy(tiny_sd):
    frozen = copy.deepcopy(tiny_sd.denoiser)
    tuner = FineTuner(tiny_sd, "test", _settings(train_method="xattn", lr=1e-2), ["star"])
    tuner.run(_toy_step(tiny_sd))
    x, cond = torch.randn(1, 4, 16, 16), tiny_sd.encode(["a star"])
    torch.testing.assert_close(tuner.teacher_predict(x, 500, cond), tiny_sd.predict(x, 500, cond, denoiser=frozen))
    assert not torch.allclose(tuner.predict(x, 500, cond), tuner.teacher_predict(x, 500, cond))
    # The teacher holds copies of the trained tensors only, not of the whole model.
    assert set(tuner.originals) == set(tiny_sd.module_groups()["xattn"])


@pytest.mark.parametrize("method", ["esd-x", "esd-u", "erasediff", "abo"])
def test_methods_touch_only_their_module_group(tiny_sd, method):
    erasure = get_method(method)
    config = replace(erasure.make_config(), steps=2, batch_size=2, **_small(method))
    edit = erasure.erase(tiny_sd, EraseRequest(**REQUEST), config)
    group = set(tiny_sd.module_groups()[config.train_method])
    names = {k.split(".", 1)[1] for k in edit.tensors}
    assert names == group
    assert edit.kind == "weight_delta" and edit.method == method


def _small(method):
    if method.startswith("esd"):
        return {"sample_steps": 3}
    if method == "erasediff":
        return {"num_forget": 4, "num_remain": 4, "generation_steps": 2}
    return {"trajectories": 2, "sample_steps": 3, "keep_weight": 1.0}


@pytest.mark.parametrize("mode, target", [("paper", "mismatched"), ("paper", "uniform"), ("reference", "mismatched")])
def test_erasediff_modes_run(tiny_sd, mode, target):
    erasure = get_method("erasediff")
    config = replace(
        erasure.make_config(), steps=2, batch_size=2, mode=mode, forget_target=target, **_small("erasediff")
    )
    edit = erasure.erase(tiny_sd, EraseRequest(**REQUEST), config)
    assert edit.config["mode"] == mode


def test_erasediff_config_rejects_unknown_modes():
    with pytest.raises(ValueError, match="mode"):
        get_method("erasediff").make_config({"mode": "magic"})


def test_adaptive_lambda():
    g_f = torch.tensor([1.0, 0.0])
    # Remain gradient already agrees with the forget gradient beyond η: no correction.
    assert adaptive_lambda(torch.tensor([2.0, 0.0]), g_f, eta=0.1) == 0.0
    # Orthogonal: λ = η.
    assert adaptive_lambda(torch.tensor([0.0, 3.0]), g_f, eta=0.1) == pytest.approx(0.1)
    # Opposed: λ grows to compensate.
    assert adaptive_lambda(torch.tensor([-1.0, 0.0]), g_f, eta=0.1) == pytest.approx(1.1)
    assert adaptive_lambda(torch.tensor([1.0]), torch.tensor([0.0]), eta=0.1) == 0.0


def test_esd_loss_target():
    e0, ep = torch.zeros(3), torch.ones(3)
    assert float(esd_loss(-torch.ones(3), ep, e0, eta=1.0)) == 0.0


def test_abo_is_labelled_as_a_reconstruction(tiny_sd, tmp_path):
    erasure = get_method("abo")
    assert "reconstructed from the paper's abstract" in erasure.notes
    config = replace(erasure.make_config(), steps=1, batch_size=1, **_small("abo"))
    erasure.erase(tiny_sd, EraseRequest(**REQUEST), config).save(tmp_path / "abo")
    assert (
        "reconstructed from the paper's abstract" in json.loads((tmp_path / "abo" / "edit.json").read_text())["notes"]
    )


def test_lora_edit_round_trip_and_export(tiny_sd, tmp_path):
    from erasekit.models import from_pipeline, load
    from erasekit.toy.pipelines import tiny_sd_pipeline

    with pytest.raises(ValueError, match="lora_rank"):
        FineTuner(tiny_sd, "test", _settings(lora_rank=0), ["star"])
    tuner = FineTuner(tiny_sd, "test", _settings(lora_rank=2, lr=1e-2), ["star"])
    tuner.run(_toy_step(tiny_sd))
    edit = tuner.make_edit()
    assert edit.data["lora"]["r"] == 2 and all("lora_" in k for k in edit.tensors)
    edit.save(tmp_path / "lora")
    x, cond = torch.randn(1, 4, 16, 16), tiny_sd.encode(["a star"])
    expected = tuner.predict(x, 300, cond).detach()

    fresh = from_pipeline(tiny_sd_pipeline())
    apply_edit(Edit.load(tmp_path / "lora"), fresh.pipeline)
    torch.testing.assert_close(fresh.predict(x, 300, cond), expected, atol=1e-5, rtol=1e-4)
    export_pipeline(fresh.pipeline, tmp_path / "exported")
    exported = load(tmp_path / "exported", device="cpu")
    torch.testing.assert_close(exported.predict(x, 300, cond), expected, atol=1e-4, rtol=1e-3)
