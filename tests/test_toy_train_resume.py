"""A toy training run killed mid-way and started again ends bit for bit where a run never stopped ends."""

import json
import random

import pytest
import torch
from safetensors.torch import load_file

from erasekit.errors import ErasekitError
from erasekit.methods.training import ResumeMismatchError
from erasekit.toy import train as T
from erasekit.toy.train import TrainConfig, train_classifier


class Killed(Exception):
    """What a patched step raises: the run dies there."""


def _cfg(folder, **kw):
    kw = dict(steps=6, batch_size=4, warmup=2, checkpoint_every=2, checkpoint_every_s=None, device="cpu") | kw
    return TrainConfig(checkpoint_dir=str(folder), **kw)


def _kill_classifier_at(monkeypatch, step: int):
    """The classifier's run dies when it reaches ``step`` (its ``_augment`` is called once a step)."""
    calls = []
    real = T._augment

    def dying(*args):
        calls.append(1)
        if len(calls) == step + 1:
            raise Killed
        return real(*args)

    monkeypatch.setattr(T, "_augment", dying)
    return calls


def _assert_equal(a: torch.nn.Module, b: torch.nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("kill_at", [3, 4])  # after the step-2 checkpoint (a step is redone), or right after step 4
def test_killed_classifier_run_resumes_to_the_same_weights(tmp_path, monkeypatch, kill_at):
    reference = train_classifier(tmp_path / "ref", _cfg(tmp_path / "ref-ckpt"))
    assert not (tmp_path / "ref-ckpt" / "checkpoint").exists()  # removed once training ends

    cfg = _cfg(tmp_path / "ckpt")
    _kill_classifier_at(monkeypatch, kill_at)
    with pytest.raises(Killed):
        train_classifier(tmp_path / "out", cfg)
    assert json.loads((tmp_path / "ckpt" / "checkpoint" / "state.json").read_text())["step"] == kill_at // 2 * 2
    monkeypatch.undo()

    calls = _kill_classifier_at(monkeypatch, 10**6)  # counts the steps the resumed run takes
    resumed = train_classifier(tmp_path / "out", cfg)
    log = json.loads((tmp_path / "out" / "training-classifier.json").read_text())
    assert log["resumed_from_step"] == kill_at // 2 * 2 and len(calls) == 6 - log["resumed_from_step"]
    assert log["steps_done"] == 6
    _assert_equal(resumed, reference)
    assert not (tmp_path / "ckpt" / "checkpoint").exists()


def test_run_with_ema_dropout_and_every_random_source_resumes_exactly(tmp_path):
    """``_run`` itself: buffers (batch norm), an EMA, dropout (torch's global RNG), a seeded ``random.Random`` and
    ``torch.Generator``."""

    def train(folder, kill_at=None):
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 1)
        )
        rng, gen = random.Random(0), torch.Generator().manual_seed(0)

        def loss_fn(step):
            if step == kill_at:
                raise Killed
            x = torch.randn(4, 4, generator=gen) + rng.random()
            return model(x).pow(2).mean(), {"loss": 0.0}

        cfg = TrainConfig(steps=6, batch_size=4, warmup=2, ema_decay=0.5, checkpoint_every=2, checkpoint_dir=folder)
        log = T._run(cfg, model, loss_fn, "test", {"rng": rng, "gen": gen}, ema=True)
        return model, log

    reference, _ = train(None)
    with pytest.raises(Killed):
        train(str(tmp_path), kill_at=5)
    resumed, log = train(str(tmp_path))
    assert log["resumed_from_step"] == 4
    _assert_equal(resumed, reference)


def test_checkpoint_of_another_configuration_is_refused(tmp_path, monkeypatch):
    _kill_classifier_at(monkeypatch, 3)
    with pytest.raises(Killed):
        train_classifier(tmp_path / "out", _cfg(tmp_path / "ckpt"))
    monkeypatch.undo()

    with pytest.raises(ResumeMismatchError) as error:
        train_classifier(tmp_path / "out", _cfg(tmp_path / "ckpt", seed=1, lr=2e-3))
    assert isinstance(error.value, ErasekitError)
    message = str(error.value)
    assert "lr is 0.001 there, 0.002 here" in message and "seed is 0 there, 1 here" in message
    assert "batch_size" not in message
    with pytest.raises(ResumeMismatchError, match="run is 'classifier' there, 'autoencoder' here"):
        T.train_vae(tmp_path / "vae", _cfg(tmp_path / "ckpt"))
    # Where and how fast it runs, and how often it saves, are not part of the run's identity.
    train_classifier(tmp_path / "out", _cfg(tmp_path / "ckpt", time_budget_s=1e6, checkpoint_every=5))


def test_checkpoint_is_safetensors_and_json_only(tmp_path, monkeypatch):
    _kill_classifier_at(monkeypatch, 4)
    with pytest.raises(Killed):
        train_classifier(tmp_path / "out", _cfg(tmp_path / "ckpt"))
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == ["checkpoint"]  # only the newest, no leftovers
    folder = tmp_path / "ckpt" / "checkpoint"
    assert sorted(p.name for p in folder.iterdir()) == ["state.json", "state.safetensors"]
    state = json.loads((folder / "state.json").read_text())
    assert state["step"] == 4 and state["steps"] == 6 and state["scheduler"]["last_epoch"] == 4
    assert set(state["random"]) == {"world_rng"}
    tensors = load_file(folder / "state.safetensors")
    assert {
        "rng/torch",
        "rng/world_gen",
        "rng/aug_gen",
        "optim/0/exp_avg",
        "optim/0/exp_avg_sq",
        "optim/0/step",
    } <= set(tensors)
    assert any(k.startswith("model/") for k in tensors)


def test_resumed_run_keeps_the_stored_step_count(tmp_path, monkeypatch):
    """The step count fitted to the time budget is stored; a resumed run keeps it rather than fitting anew."""
    _kill_classifier_at(monkeypatch, 4)
    with pytest.raises(Killed):
        train_classifier(tmp_path / "out", _cfg(tmp_path / "ckpt", time_budget_s=1e6))
    monkeypatch.undo()
    path = tmp_path / "ckpt" / "checkpoint" / "state.json"
    state = json.loads(path.read_text())
    path.write_text(json.dumps(state | {"steps": 5, "fitted": True}))  # as a fit to the budget would have left it

    cfg = _cfg(tmp_path / "ckpt", time_budget_s=1e-3)
    train_classifier(tmp_path / "out", cfg)
    log = json.loads((tmp_path / "out" / "training-classifier.json").read_text())
    assert log["steps_done"] == 5 and log["config"]["steps"] == 5
    assert cfg.steps == 6  # the caller's configuration is left as given
