"""Adversarial erasure: the white-box attack refreshes prefixes against the model being trained, the method
trains on prefixed target prompts, the prefixes survive a resume, and a method or model that cannot is refused."""

import pytest

import erasekit.api as ek
from erasekit.config import InvalidSettingError
from erasekit.errors import UnsupportedModelError

ADVERSARIAL = {
    "steps": 4,
    "batch_size": 1,
    "lr": 1e-3,
    "adversarial": True,
    "adversarial_every": 2,
    "adversarial_prompts": 2,
    "adversarial_attack_steps": 2,
    "adversarial_share": 1.0,
}


@pytest.mark.parametrize(
    "method, extra",
    [
        ("esd-x", {"sample_steps": 2}),
        ("abo", {"trajectories": 2, "sample_steps": 2}),
        ("erasediff", {"num_forget": 2, "num_remain": 2, "generation_steps": 2}),
    ],
)
def test_fine_tuning_methods_train_on_the_attacks_prefixes(tiny_sd, method, extra, monkeypatch):
    from erasekit.methods.training import engine

    seen = []
    real = engine.FineTuner.adversarial

    def spy(self, texts):
        out = real(self, texts)
        seen.extend(out)
        return out

    monkeypatch.setattr(engine.FineTuner, "adversarial", spy)
    request = {"anchor": "square"} if method == "abo" else {}
    edit = ek.erase(tiny_sd, method, ["star"], settings=ADVERSARIAL | extra, **request)
    refreshes = edit.data["adversarial"]["refreshes"]
    assert [r["step"] for r in refreshes] == [0, 0, 2, 2]  # two prompts attacked at steps 0 and 2
    prefixes = {r["prefix"] for r in refreshes}
    assert all(len(p.split()) == 5 and "star" not in p.split() for p in prefixes)
    assert seen and all(any(text.startswith(p + " ") for p in prefixes) for text in seen)  # share 1: every one


def test_adversarial_needs_an_adversary_and_an_sd_model(tiny_sd, tiny_flux):
    from erasekit.methods import EraseRequest, get_method

    method = get_method("esd-x")
    with pytest.raises(InvalidSettingError, match="needs an adversary"):
        method.erase(tiny_sd, EraseRequest(targets=["star"]), method.make_config(ADVERSARIAL | {"sample_steps": 2}))
    from erasekit.workflows.adversarial import WhiteBoxAdversary

    with pytest.raises(UnsupportedModelError, match="adversarial"):
        WhiteBoxAdversary(tiny_flux, "star", ["a star"], method.make_config(ADVERSARIAL))
    with pytest.raises(InvalidSettingError, match="adversarial"):
        ek.erase(tiny_sd, "uce", ["star"], settings={"adversarial": True})  # not a fine-tuning method


def test_prefixes_survive_a_resume(tmp_path, monkeypatch):
    import torch
    from interrupt import Killed, fresh_backbone, kill_after_first_checkpoint

    settings = ADVERSARIAL | {"sample_steps": 2, "checkpoint_every": 1, "adversarial_every": 3}
    whole = ek.erase(fresh_backbone("sd"), "esd-x", ["star"], tmp_path / "a", settings=settings)
    with monkeypatch.context() as patch:
        kill_after_first_checkpoint(patch)
        with pytest.raises(Killed):
            ek.erase(fresh_backbone("sd"), "esd-x", ["star"], tmp_path / "b", settings=settings)
    resumed = ek.erase(fresh_backbone("sd"), "esd-x", ["star"], tmp_path / "b", settings=settings, resume=True)
    assert whole.tensors.keys() == resumed.tensors.keys()
    assert all(torch.equal(whole.tensors[k], resumed.tensors[k]) for k in whole.tensors)
