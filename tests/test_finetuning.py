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


# ------------------------------------------------------------------------------------ what noxattn trains

# The parameters the official ESD (train-esd.py) and EraseDiff (erasediff_nsfw.py) scripts leave out of "noxattn"
# besides attn2: CompVis ``time_embed.*`` and ``out.*``, in diffusers' names.
OFFICIAL_NOXATTN_EXCLUDED = {
    "time_embedding.linear_1.weight",
    "time_embedding.linear_1.bias",
    "time_embedding.linear_2.weight",
    "time_embedding.linear_2.bias",
    "conv_norm_out.weight",
    "conv_norm_out.bias",
    "conv_out.weight",
    "conv_out.bias",
}


def test_noxattn_is_the_official_scope_and_noxattn_all_the_old_one(tiny_sd):
    groups = tiny_sd.module_groups()
    # every parameter outside cross-attention: what noxattn trained before
    everything_else = {n for n, _ in tiny_sd.denoiser.named_parameters() if ".attn2." not in n}
    assert set(groups["noxattn_all"]) == everything_else
    assert set(groups["noxattn"]) == everything_else - OFFICIAL_NOXATTN_EXCLUDED
    assert OFFICIAL_NOXATTN_EXCLUDED <= everything_else
    # conv_in, the norms inside the blocks and the ResNets' time projections still train.
    assert "conv_in.weight" in groups["noxattn"]
    assert any(".norm1." in n for n in groups["noxattn"]) and any("time_emb_proj" in n for n in groups["noxattn"])
    assert not any(".attn2." in n for n in groups["noxattn"])
    for group in ("noxattn", "noxattn_all"):
        tuner = FineTuner(tiny_sd, "test", _settings(train_method=group), ["star"])
        assert set(tuner.trainable) == set(groups[group])
    assert get_method("esd-u").make_config().train_method == "noxattn"
    assert get_method("erasediff").make_config().train_method == "noxattn"


# --------------------------------------------------------------------------------------------------- seeds


def _fixed_data(method, monkeypatch):
    """Make the method's generated data the same for every seed, so that only the engine's draws can differ."""
    import random

    if method == "abo":
        from erasekit.methods.abo.method import AllButOne

        real = AllButOne._trajectories
        monkeypatch.setattr(AllButOne, "_trajectories", staticmethod(lambda b, p, c, seed: real(b, p, c, 0)))
    else:
        from erasekit.methods.erasediff.method import EraseDiff

        real = EraseDiff._generate

        def generate(backbone, prompts, n, config, rng, seed, mismatched):
            fixed = 0 if mismatched is not None else 10_000
            return real(backbone, prompts, n, config, random.Random(fixed), fixed, mismatched)

        monkeypatch.setattr(EraseDiff, "_generate", staticmethod(generate))


@pytest.mark.parametrize("method", ["abo", "erasediff"])
def test_the_engine_draws_follow_the_request_seed_and_set_seed_overrides_it(method, monkeypatch):
    from erasekit.api import erase
    from erasekit.models import from_pipeline
    from erasekit.toy.pipelines import tiny_sd_pipeline

    _fixed_data(method, monkeypatch)
    settings = {"steps": 2, "batch_size": 2, "lr": 1e-3} | _small(method)

    def run(seed, extra=None):
        backbone = from_pipeline(tiny_sd_pipeline(seed=0), name="tiny-sd")
        return erase(backbone, method, "star", settings=settings | (extra or {}), seed=seed, preserve=["circle"])

    zero, one = run(0), run(1)
    assert (zero.data["training"]["seed"], one.data["training"]["seed"]) == (0, 1)
    assert any(not torch.equal(zero.tensors[k], one.tensors[k]) for k in zero.tensors), "the same data and draws"
    # --set seed=N (text, as the CLI passes it) wins over the request's seed.
    five_a, five_b = run(0, {"seed": "5"}), run(1, {"seed": "5"})
    assert five_a.data["training"]["seed"] == five_b.data["training"]["seed"] == 5
    assert all(torch.equal(five_a.tensors[k], five_b.tensors[k]) for k in five_a.tensors)
    assert any(not torch.equal(five_a.tensors[k], zero.tensors[k]) for k in zero.tensors)


def test_the_seed_the_run_resolved_is_part_of_its_identity(tiny_sd, tmp_path):
    FineTuner(tiny_sd, "esd", _settings(steps=2), ["star"], tmp_path, seed=3).run(_toy_step(tiny_sd))
    with pytest.raises(ResumeMismatchError, match="config.seed is 3 there, 4 here"):
        FineTuner(tiny_sd, "esd", _settings(steps=2), ["star"], tmp_path, resume=True, seed=4)
    # The same seed, from the request or from the setting, resumes: the draws are the same.
    assert FineTuner(tiny_sd, "esd", _settings(steps=2), ["star"], tmp_path, resume=True, seed=3).step == 2
    assert FineTuner(tiny_sd, "esd", _settings(steps=2, seed=3), ["star"], tmp_path, resume=True, seed=0).step == 2
    # Without a request seed and a setting the engine draws from seed 0, as before.
    assert FineTuner(tiny_sd, "test", _settings(), ["star"]).seed == 0


# ------------------------------------------------------------------------------------- EraseDiff's λ_t forms


def test_erasediff_lambda_forms():
    from erasekit.methods.erasediff.method import bome_lambda, cosine_lambda

    g_r, g_f = torch.tensor([-1.0, 1.0]), torch.tensor([2.0, 0.0])
    # BOME: η − ⟨g_r, g_f⟩ / ‖g_f‖² = 0.1 + 2/4; cosine: η − cos = 0.1 + 2/(√2·2).
    assert bome_lambda(g_r, g_f, eta=0.1) == pytest.approx(0.6)
    assert cosine_lambda(g_r, g_f, eta=0.1) == pytest.approx(0.1 + 2**-0.5)
    # Only the cosine form is blind to the gradients' scales.
    assert bome_lambda(10 * g_r, 0.1 * g_f, eta=0.1) == pytest.approx(0.1 + 2 / 0.04)
    assert cosine_lambda(10 * g_r, 0.1 * g_f, eta=0.1) == pytest.approx(0.1 + 2**-0.5)
    # Agreement beyond η: no correction, in both forms.
    assert bome_lambda(torch.tensor([2.0, 0.0]), g_f, eta=0.1) == 0.0
    assert cosine_lambda(torch.tensor([2.0, 0.1]), g_f, eta=0.1) == 0.0
    # Degenerate gradients: no forget gradient, no λ; no remain gradient, λ = η.
    for form in (bome_lambda, cosine_lambda):
        assert form(g_r, torch.zeros(2), eta=0.1) == 0.0
        assert form(torch.zeros(2), g_f, eta=0.1) == pytest.approx(0.1)
    assert adaptive_lambda(g_r, g_f, 0.1, "cosine") == cosine_lambda(g_r, g_f, 0.1)
    assert adaptive_lambda(g_r, g_f, 0.1) == bome_lambda(g_r, g_f, 0.1)


def test_erasediff_trains_with_the_chosen_lambda_form(tiny_sd, monkeypatch):
    from erasekit.methods.erasediff import method as erasediff

    erasure = get_method("erasediff")
    assert erasure.make_config().lambda_form == "bome"
    with pytest.raises(ValueError, match="lambda_form"):
        erasure.make_config({"lambda_form": "magic"})
    calls = []

    def spy(g_r, g_f, eta):
        calls.append(eta)
        return erasediff.cosine_lambda(g_r, g_f, eta)

    monkeypatch.setitem(erasediff.LAMBDA_FORMS, "cosine", spy)
    config = erasure.make_config({"steps": 2, "batch_size": 2, "lambda_form": "cosine"} | _small("erasediff"))
    edit = erasure.erase(tiny_sd, EraseRequest(**REQUEST), config)
    assert calls == [config.eta, config.eta] and edit.config["lambda_form"] == "cosine"
