"""Settings are typed and ranged: `--set` text is parsed by the field's type, every method's Config checks its
bounds, and the CLI's own numbers are checked — one clear line each, before any work."""

from __future__ import annotations

import dataclasses

import pytest
from typer.testing import CliRunner

from erasekit.cli import app
from erasekit.config import InvalidSettingError, parse_settings
from erasekit.methods import available_methods, get_method

runner = CliRunner()


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.mark.parametrize(
    "method, setting, message",
    [
        ("esd-x", "steps=-5", "steps must be ≥ 1"),
        ("esd-x", "steps=2.5", "steps must be an integer"),
        ("esd-x", "lr=abc", "lr must be a number"),
        ("esd-x", "lr=0", "lr must be > 0"),
        ("esd-x", "lr=nan", "lr must be a finite number"),
        ("abo", "batch_size=0", "batch_size must be ≥ 1"),
        ("mce", "beta=-1", "beta must be ≥ 0"),
        ("mce", "lr_ffn=inf", "lr_ffn must be a finite number"),
        ("erasediff", "gradient_checkpointing=maybe", "must be true or false"),
        ("erasediff", "inner_lr=-1", "inner_lr must be > 0"),
        ("gie", "cross_window=1.5", "cross_window must be in [0, 1]"),
        ("gie", "scale=0", "scale 0 inhibits nothing"),
        ("gie", "scale_grid=[-1, nan]", "scale_grid must be"),
        ("gie", "hidden=[64, 0]", "hidden must be ≥ 1"),
        ("gie", "epochs=", "epochs must be an integer"),
    ],
)
def test_a_bad_setting_is_one_clear_line(tmp_path, method, setting, message):
    family = "flux" if method == "mce" else "sd"
    code, output = run(
        "erase",
        "--model",
        f"toy-{family}",
        "--method",
        method,
        "--concept",
        "star",
        "--set",
        setting,
        "--out",
        tmp_path / "e",
    )
    assert code != 0, output
    assert message in output
    assert "Traceback" not in output
    assert not (tmp_path / "e").exists()


def test_settings_text_is_parsed_by_the_fields_type():
    from erasekit.methods.gie import GIEConfig
    from erasekit.methods.mce import MCEConfig

    parsed = parse_settings(
        GIEConfig,
        {
            "scale": "-2",
            "epochs": "10",
            "judge_path": "null",
            "judge": "toy",
            "scale_grid": "[-1, -2.5]",
            "allow_positive": "false",
        },
    )
    assert parsed == {
        "scale": -2.0,
        "epochs": 10,
        "judge_path": None,
        "judge": "toy",
        "scale_grid": [-1, -2.5],
        "allow_positive": False,
    }
    config = get_method("gie").make_config(parsed)
    assert config.scale == -2.0 and config.epochs == 10 and config.scale_grid == [-1.0, -2.5]
    # Text fields keep the text, even when it reads as a number.
    assert parse_settings(MCEConfig, {"neutral_phrase": "42"}) == {"neutral_phrase": "42"}
    # Integers given to float fields are stored as floats: the manifest shows one type per field.
    assert isinstance(get_method("esd-x").make_config({"lr": 1}).lr, float)


def test_python_callers_are_checked_too():
    from erasekit.methods.abo import ABOConfig

    with pytest.raises(InvalidSettingError, match="steps must be an integer"):
        ABOConfig(steps="10")
    with pytest.raises(InvalidSettingError, match="steps must be ≥ 1"):
        ABOConfig(steps=0)
    with pytest.raises(InvalidSettingError, match="zero_guidance must be true or false"):
        ABOConfig(zero_guidance=1)


@pytest.mark.parametrize("name", sorted(available_methods()))
def test_every_method_config_is_checked_and_its_defaults_pass(name):
    method = get_method(name)
    assert hasattr(method.Config, "RANGES"), f"{name}'s Config does not derive from CheckedConfig"
    method.make_config()
    method.make_config(toy=True)
    names = [f.name for f in dataclasses.fields(method.Config)]
    assert "RANGES" not in names
    with pytest.raises(InvalidSettingError, match="no setting RANGES"):
        method.make_config({"RANGES": "{}"})


@pytest.mark.parametrize(
    "args, message",
    [
        (("generate", "-p", "a star", "--steps", "0"), "--steps"),
        (("generate", "-p", "a star", "--steps", "-3"), "--steps"),
        (("generate", "-p", "a star", "--guidance", "nan"), "--guidance"),
        (("generate", "-p", "a star", "--guidance", "inf"), "not a finite number"),
        (("generate", "-p", "a star", "-n", "0"), "--num"),
        (("evaluate", "-c", "star", "--limit", "-1"), "--limit"),
        (("evaluate", "-c", "star", "--n-target", "-4"), "--n-target"),
        (("evaluate", "-c", "star", "--seed", "-1"), "--seed"),
        (("attack", "-c", "star", "--prompts", "p.txt", "--out", "a", "--attack-steps", "-3"), "--attack-steps"),
        (("attack", "-c", "star", "--prompts", "p.txt", "--out", "a", "--eta", "inf"), "not a finite number"),
        (("bench", "-m", "negprompt", "-c", "star", "--n", "1"), "--n"),
        (("erase", "-c", "star", "--out", "e", "--scale", "nan"), "not a finite number"),
        (("erase", "-c", "star", "--out", "e", "--seed", "-2"), "--seed"),
        (("toy", "eval", "--n", "0"), "--n"),
    ],
)
def test_the_clis_own_numbers_are_checked(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    code, output = run(*args)
    assert code != 0, output
    assert message in output
    assert "Traceback" not in output
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_no_op_edit_is_never_reported_as_an_erasure(tiny_sd, tmp_path):
    """lr = 0 is refused by its range; a run whose steps change nothing is refused by the engine."""
    from erasekit.api import erase
    from erasekit.errors import ErasekitError

    with pytest.raises(InvalidSettingError, match="lr must be > 0"):
        erase(tiny_sd, "esd-x", "star", tmp_path / "e", settings={"lr": 0})
    with pytest.raises(ErasekitError, match="changed nothing"):
        erase(
            tiny_sd,
            "esd-x",
            "star",
            tmp_path / "e",
            settings={"lr": 1e-30, "steps": 1, "sample_steps": 2, "batch_size": 1},
        )
    assert not (tmp_path / "e").exists()
