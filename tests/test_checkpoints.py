"""One checkpoint format for every training method (``erasekit.methods.training.checkpoint``): the same files and
keys from the fine-tuning engine and from MCE, an exact round trip of trained tensors, optimizer state and every
random state, one mismatch error that names what differs, and one resume rule (no checkpoint yet: a fresh start)."""

from __future__ import annotations

import copy
import json
import random

import pytest
import torch
from interrupt import Killed, fresh_backbone, kill_after_first_checkpoint
from safetensors.torch import load_file

from erasekit.api import erase
from erasekit.methods.mce import method as mce_method
from erasekit.methods.training import (
    CHECKPOINT_DIR,
    FineTuner,
    FineTuneSettings,
    ResumeMismatchError,
    TrainingCheckpoint,
    engine,
    run_identity,
)

CASES = {
    "esd-x": ("sd", {"steps": 4, "checkpoint_every": 2, "batch_size": 1, "lr": 1e-3, "sample_steps": 2}),
    "mce": ("flux", {"steps": 4, "checkpoint_every": 2, "sampler_steps": 2, "batch_size": 2, "init_logit": 0.1}),
}
META_KEYS = {"format", "method", "model", "concepts", "config", "step", "optimizer", "python_rng", "extra"}


def _interrupted(case, out, monkeypatch, **settings):
    family, base = CASES[case]
    with monkeypatch.context() as patch:
        kill_after_first_checkpoint(patch)
        with pytest.raises(Killed):
            erase(fresh_backbone(family), case, "star", out, settings=base | settings, preserve=["circle"])
    return out.parent / f"{out.name}.work" / CHECKPOINT_DIR


# ------------------------------------------------------------------------------------------------- the format


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_training_method_writes_the_same_checkpoint_format(case, tmp_path, monkeypatch):
    folder = _interrupted(case, tmp_path / "e", monkeypatch)
    assert sorted(p.name for p in folder.iterdir()) == ["state.safetensors", "trainer.json"]
    meta = json.loads((folder / "trainer.json").read_text())
    assert set(meta) == META_KEYS
    assert meta["format"] == 1 and meta["step"] == 2 and meta["extra"] == {}
    assert meta["method"] == case and meta["concepts"] == ["star"] and meta["model"].startswith("tiny-")
    assert meta["config"]["steps"] == 4 and meta["config"]["checkpoint_every"] == 2
    # The Python RNG as JSON numbers, not a repr to evaluate.
    rng = meta["python_rng"]
    assert set(rng) == {"version", "internal", "gauss_next"} and rng["version"] == 3
    assert len(rng["internal"]) == 625 and all(isinstance(x, int) for x in rng["internal"])

    tensors = load_file(folder / "state.safetensors")
    assert {"rng/torch", "rng/generator/generator"} <= set(tensors)
    assert all(k.split("/")[0] in ("param", "optim", "rng") for k in tensors), sorted(tensors)
    trained = {k.removeprefix("param/") for k in tensors if k.startswith("param/")}
    assert trained and set(meta["optimizer"]) <= trained
    assert meta["optimizer"], "the optimizer's state is saved"
    for name, entry in meta["optimizer"].items():
        assert entry["tensors"] == ["exp_avg", "exp_avg_sq"]
        assert entry["scalars"] == {"step": {"value": 2.0, "dtype": "float32"}}
        for key in entry["tensors"]:
            assert tensors[f"optim/{name}/{key}"].shape == tensors[f"param/{name}"].shape


def test_both_methods_share_one_checkpoint_class():
    assert issubclass(mce_method._Checkpoint, TrainingCheckpoint)
    assert engine.CHECKPOINT_DIR == CHECKPOINT_DIR == "checkpoint"
    assert engine.ResumeMismatchError is ResumeMismatchError


# ---------------------------------------------------------------------------------------------- round trip


def _setup(optimizer: str, seed: int):
    torch.manual_seed(seed)
    params = {
        "a.weight": torch.nn.Parameter(torch.randn(3, 4)),
        "b.bias": torch.nn.Parameter(torch.randn(5)),
        "c": torch.randn(2, requires_grad=True),
    }
    # Parameter groups in another order than the tensors' dict: the names, not the positions, link them.
    groups = [{"params": [params["c"], params["a.weight"]], "lr": 0.1}, {"params": [params["b.bias"]], "lr": 0.01}]
    if optimizer == "adamw-amsgrad":
        opt = torch.optim.AdamW(groups, weight_decay=1e-2, amsgrad=True)
    elif optimizer == "adam":
        opt = torch.optim.Adam(groups)
    elif optimizer == "sgd-momentum":
        opt = torch.optim.SGD(groups, momentum=0.9)
    else:
        opt = torch.optim.SGD(groups)  # momentum 0: its state is a None momentum buffer
    generators = {"noise": torch.Generator().manual_seed(seed), "draws": torch.Generator().manual_seed(seed + 1)}
    return params, opt, generators, random.Random(seed)


def _train(params, opt, generators, rng, steps):
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        noise = torch.randn(4, generator=generators["noise"]) + torch.rand(1, generator=generators["draws"])
        loss = (params["a.weight"] @ noise).pow(2).sum() + params["b.bias"].pow(3).sum() + params["c"].exp().sum()
        loss = loss * (1 + rng.random()) + torch.randn(1).sum() * 0  # the global RNG moves too
        loss.backward()
        opt.step()
    rng.gauss(0, 1)  # leaves a cached gauss_next in the Python state


def _optimizer_equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    assert sa["state"].keys() == sb["state"].keys()
    for index, entry in sa["state"].items():
        assert entry.keys() == sb["state"][index].keys()
        for key, value in entry.items():
            other = sb["state"][index][key]
            if torch.is_tensor(value):
                assert torch.is_tensor(other) and value.dtype == other.dtype and torch.equal(value, other), key
            else:
                assert value == other, key


@pytest.mark.parametrize("optimizer", ["adam", "adamw-amsgrad", "sgd-momentum", "sgd"])
def test_a_round_trip_restores_optimizer_state_and_random_states_exactly(optimizer, tmp_path):
    identity = {"method": "test", "model": "m", "concepts": ["star"], "config": {"lr": 0.1}}
    params, opt, gens, rng = _setup(optimizer, seed=0)
    _train(params, opt, gens, rng, steps=3)
    checkpoint = TrainingCheckpoint(tmp_path, identity)
    assert not checkpoint.exists()
    checkpoint.save(3, params, opt, gens, rng, extra={"history": [1.5, 0.25]})
    assert checkpoint.exists()
    torch_state = torch.get_rng_state()

    fresh = TrainingCheckpoint(tmp_path, identity)
    params2, opt2, gens2, rng2 = _setup(optimizer, seed=7)
    torch.manual_seed(123)
    assert fresh.restore(params2, opt2, gens2, rng2) == 3
    assert fresh.extra == {"history": [1.5, 0.25]}
    for name, value in params.items():
        assert torch.equal(params2[name], value), name
    _optimizer_equal(opt, opt2)
    for name, generator in gens.items():
        assert torch.equal(gens2[name].get_state(), generator.get_state()), name
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert rng2.getstate() == rng.getstate()

    # And training on continues bit for bit.
    _train(params, opt, gens, rng, steps=2)
    torch.set_rng_state(torch_state)
    _train(params2, opt2, gens2, rng2, steps=2)
    for name, value in params.items():
        assert torch.equal(params2[name], value), name
    _optimizer_equal(opt, opt2)


def test_scalar_optimizer_state_of_any_kind_comes_back_as_it_was(tmp_path):
    params, opt, gens, rng = _setup("adam", seed=0)
    _train(params, opt, gens, rng, steps=1)
    opt.state[params["c"]].update(none=None, count=3, flag=True, rate=0.1, index=torch.tensor(7))
    TrainingCheckpoint(tmp_path, {"method": "test"}).save(1, params, opt, gens, rng)
    entry = json.loads((tmp_path / CHECKPOINT_DIR / "trainer.json").read_text())["optimizer"]["c"]["scalars"]
    assert entry["index"] == {"value": 7, "dtype": "int64"} and entry["none"] == {"value": None}
    params2, opt2, gens2, rng2 = _setup("adam", seed=1)
    TrainingCheckpoint(tmp_path, {"method": "test"}).restore(params2, opt2, gens2, rng2)
    # Exactly what torch's own in-memory round trip gives (load_state_dict casts tensors, 'step' aside, to the
    # parameter's dtype).
    reference = _setup("adam", seed=2)[1]
    reference.load_state_dict(copy.deepcopy(opt.state_dict()))
    _optimizer_equal(reference, opt2)
    assert opt2.state[params2["c"]]["count"] == 3 and opt2.state[params2["c"]]["none"] is None


def test_the_checkpoint_holds_no_pickle_and_no_repr(tmp_path):
    params, opt, gens, rng = _setup("adam", seed=0)
    _train(params, opt, gens, rng, steps=1)
    TrainingCheckpoint(tmp_path, run_identity("test", "m", ["star"], FineTuneSettings())).save(
        1, params, opt, gens, rng
    )
    text = (tmp_path / CHECKPOINT_DIR / "trainer.json").read_text()
    meta = json.loads(text)
    assert isinstance(meta["python_rng"]["internal"], list) and "(" not in text
    assert sorted(p.name for p in (tmp_path / CHECKPOINT_DIR).iterdir()) == ["state.safetensors", "trainer.json"]


# ------------------------------------------------------------------------------------------------ mismatch


def test_a_mismatch_names_every_difference(tmp_path):
    params, opt, gens, rng = _setup("adam", seed=0)
    _train(params, opt, gens, rng, steps=1)
    TrainingCheckpoint(tmp_path, run_identity("esd", "tiny", ["star"], FineTuneSettings(lr=1e-3))).save(
        1, params, opt, gens, rng
    )
    other = TrainingCheckpoint(tmp_path, run_identity("esd", "tiny", ["circle"], FineTuneSettings(lr=1e-2, steps=9)))
    params2, opt2, gens2, rng2 = _setup("adam", seed=1)
    before = {n: p.detach().clone() for n, p in params2.items()}
    with pytest.raises(ResumeMismatchError) as error:
        other.restore(params2, opt2, gens2, rng2)
    message = str(error.value)
    assert "esd run on tiny" in message
    assert "concepts is ['star'] there, ['circle'] here" in message
    assert "config.lr is 0.001 there, 0.01 here" in message and "config.steps is " in message
    assert "method is" not in message and "model is" not in message
    # A refused resume changes nothing.
    assert all(torch.equal(params2[n], v) for n, v in before.items()) and not opt2.state


def test_the_fine_tuner_names_what_differs(tiny_sd, tmp_path):
    settings = FineTuneSettings(lr=1e-3, steps=2, batch_size=1, checkpoint_every=1)
    with torch.no_grad():
        cond = tiny_sd.encode(["a star"])

    def step(t):
        loss = (t.predict(t.randn(1, 4, 16, 16), 500, cond) - 0.1).pow(2).mean()
        t.backward(loss)
        return {"loss": loss.detach()}

    FineTuner(tiny_sd, "esd", settings, ["star"], tmp_path).run(step)
    with pytest.raises(ResumeMismatchError, match=r"concepts is \['star'\] there, \['circle'\] here"):
        FineTuner(tiny_sd, "esd", settings, ["circle"], tmp_path, resume=True)
    with pytest.raises(ResumeMismatchError, match="method is 'esd' there, 'erasediff' here"):
        FineTuner(tiny_sd, "erasediff", settings, ["star"], tmp_path, resume=True)


def test_mce_names_what_differs(tmp_path, monkeypatch):
    _interrupted("mce", tmp_path / "e", monkeypatch)
    family, base = CASES["mce"]
    with pytest.raises(ResumeMismatchError, match="config.init_logit is 0.1 there, 0.2 here"):
        erase(
            fresh_backbone(family),
            "mce",
            "star",
            tmp_path / "e",
            settings=base | {"init_logit": 0.2},
            preserve=["circle"],
            resume=True,
        )


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_checkpoint_folder_of_another_format_is_refused_not_dropped(case, tmp_path):
    family, base = CASES[case]
    folder = tmp_path / "e.work" / CHECKPOINT_DIR
    folder.mkdir(parents=True)
    (folder / "state.json").write_text("{}")  # MCE's former layout
    with pytest.raises(ResumeMismatchError, match="not a checkpoint this erasekit can resume"):
        erase(fresh_backbone(family), case, "star", tmp_path / "e", settings=base, preserve=["circle"], resume=True)
    assert (folder / "state.json").is_file()


# ----------------------------------------------------------------------------------------------- the rule


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_run_killed_before_its_first_checkpoint_resumes_as_a_fresh_start(case, tmp_path):
    family, base = CASES[case]
    kwargs = dict(settings=base, preserve=["circle"])
    whole = erase(fresh_backbone(family), case, "star", tmp_path / "whole", **kwargs)
    # Killed while its first checkpoint was being written: a work folder, and only the temporary sibling.
    partial = tmp_path / "cut.work" / f".{CHECKPOINT_DIR}.x1y2z3"
    partial.mkdir(parents=True)
    (partial / "state.safetensors").write_bytes(b"half")
    resumed = erase(fresh_backbone(family), case, "star", tmp_path / "cut", resume=True, **kwargs)
    assert sorted(resumed.tensors) == sorted(whole.tensors)
    for key, value in whole.tensors.items():
        assert torch.equal(resumed.tensors[key], value), f"{case}: {key} differs"
    assert not (tmp_path / "cut.work").exists()


def test_no_checkpoint_restores_nothing(tmp_path):
    params, opt, gens, rng = _setup("adam", seed=0)
    state = (torch.get_rng_state(), rng.getstate(), {n: g.get_state() for n, g in gens.items()})
    for workdir in (None, tmp_path / "absent", tmp_path):
        checkpoint = TrainingCheckpoint(workdir, {"method": "test"})
        assert not checkpoint.exists() and checkpoint.restore(params, opt, gens, rng) == 0
    assert torch.equal(torch.get_rng_state(), state[0]) and rng.getstate() == state[1] and not opt.state
    assert all(torch.equal(g.get_state(), state[2][n]) for n, g in gens.items())
    assert TrainingCheckpoint(None, {"method": "test"}).save(1, params, opt, gens, rng) is None


def test_the_fine_tuner_and_mce_both_start_at_step_0_without_a_checkpoint(tiny_sd, tiny_flux, tmp_path):
    from erasekit.methods import EraseRequest, get_method

    tuner = FineTuner(tiny_sd, "test", FineTuneSettings(steps=2), ["star"], tmp_path / "ft", resume=True)
    assert tuner.step == 0
    method = get_method("mce")
    config = method.make_config({"steps": 2, "sampler_steps": 1, "checkpoint_every": 1, "guidance_scale": 1.0})

    def request(**kw):
        return EraseRequest(targets=["star"], prompts=["a red star"], preserve_prompts=["a blue circle"], **kw)

    whole = method.erase(tiny_flux, request(), config)
    (tmp_path / "mce").mkdir()
    resumed = method.erase(tiny_flux, request(workdir=str(tmp_path / "mce"), resume=True), config)
    for key, value in whole.tensors.items():
        assert torch.equal(resumed.tensors[key], value), key
