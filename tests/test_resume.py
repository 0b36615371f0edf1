"""Nothing lost when a run is interrupted: every training method, through its own `erase`, killed right after a
checkpoint and resumed, makes the edit an uninterrupted run makes, bit for bit; the CLI says how to continue;
a rerun never silently discards an interrupted run."""

from __future__ import annotations

import json

import pytest
import torch
from interrupt import Killed, fresh_backbone, kill_after_first_checkpoint
from typer.testing import CliRunner

from erasekit.api import erase
from erasekit.cli import app
from erasekit.methods.training import FineTuner, FineTuneSettings, TrainingDivergedError
from erasekit.outputs import OutputError
from erasekit.toy.pipelines import tiny_sd_pipeline

FINE_TUNING = {"steps": 4, "checkpoint_every": 2, "batch_size": 1, "lr": 1e-3}
CASES = {
    "esd-x": ("sd", FINE_TUNING | {"sample_steps": 2}),
    "esd-u": ("sd", FINE_TUNING | {"sample_steps": 2}),
    "erasediff": ("sd", FINE_TUNING | {"num_forget": 2, "num_remain": 2, "generation_steps": 2}),
    "erasediff-reference": (
        "sd",
        FINE_TUNING | {"mode": "reference", "num_forget": 2, "num_remain": 2, "generation_steps": 2},
    ),
    "abo": ("sd", FINE_TUNING | {"trajectories": 2, "sample_steps": 2, "keep_weight": 1.0}),
    "abo-lora": ("sd", FINE_TUNING | {"trajectories": 2, "sample_steps": 2, "lora_rank": 2}),
    "mce": ("flux", {"steps": 4, "checkpoint_every": 2, "sampler_steps": 2, "batch_size": 2, "init_logit": 0.1}),
    "mce-unet": ("sd", {"steps": 4, "checkpoint_every": 2, "sampler_steps": 2, "batch_size": 2, "init_logit": 0.1}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_run_killed_at_a_checkpoint_and_resumed_equals_an_uninterrupted_one(case, tmp_path, monkeypatch):
    family, settings = CASES[case]
    method = case.removesuffix("-reference").removesuffix("-lora").removesuffix("-unet")
    kwargs = dict(settings=settings, preserve=["circle"], anchor="square" if method == "abo" else None)
    whole = erase(fresh_backbone(family), method, "star", tmp_path / "whole", **kwargs)

    with monkeypatch.context() as patch:
        kill_after_first_checkpoint(patch)
        with pytest.raises(Killed):
            erase(fresh_backbone(family), method, "star", tmp_path / "cut", **kwargs)
    assert (tmp_path / "cut.work" / "checkpoint").is_dir() and not (tmp_path / "cut").exists()
    resumed = erase(fresh_backbone(family), method, "star", tmp_path / "cut", resume=True, **kwargs)

    assert sorted(resumed.tensors) == sorted(whole.tensors)
    for key, value in whole.tensors.items():
        assert torch.equal(resumed.tensors[key], value), f"{case}: {key} differs after resume"
    assert not (tmp_path / "cut.work").exists()


def test_a_rerun_without_resume_never_discards_an_interrupted_run(tmp_path, monkeypatch):
    settings = FINE_TUNING | {"sample_steps": 2}
    with monkeypatch.context() as patch:
        kill_after_first_checkpoint(patch)
        with pytest.raises(Killed):
            erase(fresh_backbone("sd"), "esd-x", "star", tmp_path / "e", settings=settings)
    with pytest.raises(OutputError, match="holds an interrupted run; pass --resume"):
        erase(fresh_backbone("sd"), "esd-x", "star", tmp_path / "e", settings=settings)
    assert (tmp_path / "e.work" / "checkpoint").is_dir()
    (tmp_path / "e.work" / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="refusing to discard"):
        erase(fresh_backbone("sd"), "esd-x", "star", tmp_path / "e", settings=settings, overwrite=True)
    (tmp_path / "e.work" / "notes.txt").unlink()
    erase(fresh_backbone("sd"), "esd-x", "star", tmp_path / "e", settings=settings, overwrite=True)  # afresh
    assert (tmp_path / "e" / "edit.json").is_file() and not (tmp_path / "e.work").exists()


def test_ctrl_c_prints_the_command_that_continues_the_run(tmp_path, monkeypatch):

    model = tmp_path / "tiny-sd"
    tiny_sd_pipeline().save_pretrained(model)
    args = [
        "erase",
        "--model",
        str(model),
        "--method",
        "esd-x",
        "--concept",
        "star",
        "--out",
        str(tmp_path / "e"),
        "--set",
        "steps=4",
        "--set",
        "checkpoint_every=2",
        "--set",
        "sample_steps=2",
        "--set",
        "batch_size=1",
    ]
    runner = CliRunner()
    with monkeypatch.context() as patch:
        kill_after_first_checkpoint(patch)
        result = runner.invoke(app, args)
    assert result.exit_code == 130, result.output
    assert "interrupted" in result.output and "Traceback" not in result.output
    command = result.output.split("Continue with:")[1].split()
    assert command[:2] == ["erasekit", "erase"] and command[-1] == "--resume"
    assert all(arg in command for arg in args[1:])
    result = runner.invoke(app, command[1:])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "e" / "edit.json").read_text())["concepts"] == ["star"]


def test_the_nan_guard_names_a_checkpoint_only_when_there_is_one(tiny_sd, tmp_path):
    settings = FineTuneSettings(lr=1e-3, steps=4, batch_size=1, checkpoint_every=2)
    with torch.no_grad():
        cond = tiny_sd.encode(["a star"])

    def step_until(bad_step):
        def step(t):
            if t.step >= bad_step:
                return {"loss": torch.tensor(float("nan"))}
            x = t.randn(1, 4, 16, 16)
            loss = (t.predict(x, 500, cond) - 0.1).pow(2).mean()
            t.backward(loss)
            return {"loss": loss.detach()}

        return step

    with pytest.raises(TrainingDivergedError) as early:
        FineTuner(tiny_sd, "test", settings, ["star"], tmp_path / "a").run(step_until(1))
    assert "checkpoint" not in str(early.value)
    with pytest.raises(TrainingDivergedError, match="last good checkpoint is in"):
        FineTuner(tiny_sd, "test", settings, ["star"], tmp_path / "b").run(step_until(3))
