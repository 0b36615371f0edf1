"""The command line: bad input ends with one clear line and a non-zero exit code; the main jobs run."""

import json

import pytest
import torch
from typer.testing import CliRunner

from erasekit.cli import app
from erasekit.methods import apply_edit

runner = CliRunner()


def run(*args):
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (("erase", "--model", "no-such-model", "--concept", "star", "--out", "{tmp}/e"), "No model 'no-such-model'"),
        (("erase", "--method", "nope", "--concept", "star", "--out", "{tmp}/e"), "unknown method 'nope'"),
        (("erase", "--concept", "dog", "--out", "{tmp}/e"), "'dog' is not a concept of the toy world"),
        (("erase", "--concept", "star", "--set", "bogus=1", "--out", "{tmp}/e"), "no setting bogus"),
        (("evaluate", "--concept", "star", "--edit", "{tmp}/missing"), "not an edit folder"),
        (("evaluate", "--concept", "star", "--suite", "fid"), "unknown suite"),
        (("evaluate", "--concept", "star", "--suite", "i2p"), "give --out DIR"),
        (("evaluate", "--concept", "star", "--suite", "prompts", "--out", "{tmp}/o"), "needs --prompts"),
        (("attack", "-c", "star", "--prompts", "{tmp}/none.csv", "--out", "{tmp}/a"), "does not exist"),
        (("bench", "-m", "negprompt", "-c", "star", "--suites", "toy,fid", "--out", "{tmp}/b"), "unknown suite"),
        (("bench", "-m", "negprompt", "-c", "dog", "--out", "{tmp}/b"), "'dog' is not a concept"),
        (("generate", "-p", "a star", "--out", "{tmp}/x.jpg"), "must be a .png"),
        (("toy", "train", "unicorn", "--out", "{tmp}/w"), "unknown toy-world stage"),
        (("toy", "train", "unicorn", "--world", "1", "--out", "{tmp}/w"), "unknown toy model"),
        (("toy", "train", "sd", "--out", "{tmp}/w"), "stage sd needs vae, clip"),
    ],
)
def test_bad_input_fails_with_one_clear_line(tmp_path, args, message):
    code, output = run(*(a.format(tmp=tmp_path) for a in args))
    assert code != 0
    assert message in output
    assert "Traceback" not in output
    assert not (tmp_path / "e").exists()


def test_pickled_weights_in_an_edit_folder_are_refused(tmp_path):
    folder = tmp_path / "edit"
    folder.mkdir()
    (folder / "edit.json").write_text(
        json.dumps(
            {
                "kind": "weight_delta",
                "method": "esd",
                "config": {},
                "base_model": "toy-sd",
                "concepts": ["star"],
                "family": "sd",
            }
        )
    )
    (folder / "unet.bin").write_bytes(b"\x80\x04")
    code, output = run("generate", "-p", "a star", "--edit", str(folder), "--out", str(tmp_path / "x.png"))
    assert code != 0 and "safetensors" in output
    assert not (tmp_path / "x.png").exists()


@pytest.mark.toy_weights
def test_erase_generate_evaluate_with_toy_weights(tmp_path):
    code, output = run("erase", "--concept", "star", "--out", str(tmp_path / "star"))
    assert code == 0, output
    code, output = run("erase", "--concept", "star", "--out", str(tmp_path / "star"))
    assert code != 0 and "already exists" in output
    code, output = run("generate", "-p", "a red star", "--edit", str(tmp_path / "star"), "-o", str(tmp_path / "a.png"))
    assert code == 0, output
    assert (tmp_path / "a.png").stat().st_size > 100
    code, output = run(
        "evaluate",
        "--concept",
        "star",
        "--edit",
        str(tmp_path / "star"),
        "--json",
        str(tmp_path / "r.json"),
        "--n-target",
        "3",
        "--n-synonym",
        "3",
        "--n-preserve",
        "3",
        "--n-neighbour",
        "3",
    )
    assert code == 0, output
    metrics = json.loads((tmp_path / "r.json").read_text())["metrics"]
    for name in ("erasure_rate", "synonym_erasure_rate", "preserve_acc", "preserve_drop", "neighbour_acc", "fd_clf"):
        assert name in metrics


def test_models_and_methods_list():
    code, output = run("models")
    assert code == 0 and "toy-sd" in output and "toy-flux" in output
    code, output = run("methods")
    assert code == 0 and "negprompt" in output


@pytest.fixture
def tiny_sd_folder(tmp_path):
    from erasekit.toy.pipelines import tiny_sd_pipeline

    folder = tmp_path / "tiny-sd"
    tiny_sd_pipeline().save_pretrained(folder)
    return folder


def test_erase_resume_and_export_on_a_local_folder(tiny_sd_folder, tmp_path):
    from erasekit.models import load

    out = tmp_path / "star"
    base = [
        "erase",
        "--model",
        str(tiny_sd_folder),
        "--method",
        "esd-x",
        "--concept",
        "star",
        "--out",
        str(out),
        "--set",
        "sample_steps=2",
        "--set",
        "batch_size=1",
        "--set",
        "checkpoint_every=1",
    ]
    code, output = run(*base, "--set", "steps=2")
    assert code == 0, output
    assert not (tmp_path / "star.work").exists()  # checkpoints are cleared once the edit is saved
    code, output = run(*base, "--set", "steps=2", "--resume", "--overwrite")
    assert code != 0 and "nothing to resume" in output
    code, output = run(
        "erase",
        "--model",
        str(tiny_sd_folder),
        "--method",
        "esd-x",
        "--concept",
        "star",
        "--out",
        str(tmp_path / "bad"),
        "--lora-rank",
        "0",
    )
    assert code != 0 and "lora_rank" in output
    code, output = run("export", "--model", str(tiny_sd_folder), "--edit", str(out), "--out", str(tmp_path / "exp"))
    assert code == 0, output
    exported = load(tmp_path / "exp", device="cpu")
    edited = load(tiny_sd_folder, device="cpu")
    from erasekit.edits import Edit

    apply_edit(Edit.load(out), edited.pipeline)
    for (name, a), (_, b) in zip(exported.denoiser.named_parameters(), edited.denoiser.named_parameters()):
        assert torch.equal(a, b), name


def test_export_refuses_inference_controls(tiny_sd_folder, tmp_path):
    code, output = run("erase", "--model", str(tiny_sd_folder), "--concept", "star", "--out", str(tmp_path / "neg"))
    assert code == 0, output
    code, output = run(
        "export", "--model", str(tiny_sd_folder), "--edit", str(tmp_path / "neg"), "--out", str(tmp_path / "exp")
    )
    assert code != 0 and "cannot be baked" in output
    assert not (tmp_path / "exp").exists()


def test_anchor_equal_to_target_is_refused(tiny_sd_folder, tmp_path):
    code, output = run(
        "erase",
        "--model",
        str(tiny_sd_folder),
        "--method",
        "abo",
        "--concept",
        "star",
        "--anchor",
        "star",
        "--out",
        str(tmp_path / "x"),
    )
    assert code != 0 and "anchor" in output


@pytest.mark.toy_weights
def test_demo_writes_a_report(tmp_path):
    code, output = run("demo", "--out", str(tmp_path / "demo"), "--method", "negprompt", "--n", "2")
    assert code == 0, output
    html = (tmp_path / "demo" / "report.html").read_text()
    assert "erasure_rate" in html and "data:image/png;base64" in html
    assert json.loads((tmp_path / "demo" / "results.json").read_text())["method"] == "negprompt"


def test_import_released_masks_then_export_a_plain_folder(tmp_path):
    from erasekit.generate import generate
    from erasekit.methods.mce import find_gates
    from erasekit.models import load
    from erasekit.toy.pipelines import tiny_flux_pipeline

    folder = tmp_path / "tiny-flux"
    tiny_flux_pipeline().save_pretrained(folder)
    gates = find_gates(load(folder).denoiser, "flux")
    g = torch.Generator().manual_seed(0)
    torch.save([torch.randn(x.units, generator=g) for x in gates if x.group == "ffn"], tmp_path / "ff.pt")
    torch.save([torch.randn(x.units, generator=g) for x in gates if x.group == "norm"], tmp_path / "norm.pt")
    code, output = run(
        "import-masks",
        "--model",
        str(folder),
        "--ff",
        str(tmp_path / "ff.pt"),
        "--norm",
        str(tmp_path / "norm.pt"),
        "--concept",
        "nudity",
        "--out",
        str(tmp_path / "masks"),
    )
    assert code == 0, output
    assert "FFN units" in output
    code, output = run(
        "export", "--model", str(folder), "--edit", str(tmp_path / "masks"), "--out", str(tmp_path / "exp")
    )
    assert code == 0, output
    from erasekit.api import load_model

    hooked = generate(load_model(folder, [tmp_path / "masks"]), ["a red star"], 0, num_inference_steps=3)
    baked = generate(load(tmp_path / "exp"), ["a red star"], 0, num_inference_steps=3)
    torch.testing.assert_close(baked, hooked, atol=1e-5, rtol=0)
    code, output = run(
        "import-masks",
        "--model",
        str(folder),
        "--ff",
        str(tmp_path / "norm.pt"),
        "--norm",
        str(tmp_path / "norm.pt"),
        "--concept",
        "x",
        "--out",
        str(tmp_path / "bad"),
    )
    assert code != 0 and "another model shape" in output and not (tmp_path / "bad").exists()


def test_gie_with_a_fixed_scale_from_the_cli(tiny_sd_folder, tmp_path):
    code, output = run(
        "erase",
        "--model",
        str(tiny_sd_folder),
        "--method",
        "gie",
        "--concept",
        "star",
        "--scale",
        "-4",
        "--out",
        str(tmp_path / "gie"),
    )
    assert code == 0, output
    code, output = run(
        "generate",
        "--model",
        str(tiny_sd_folder),
        "--edit",
        str(tmp_path / "gie"),
        "-p",
        "a red star",
        "--steps",
        "3",
        "--out",
        str(tmp_path / "img.png"),
    )
    assert code == 0, output
    assert (tmp_path / "img.png").is_file()
    code, output = run(
        "erase",
        "--model",
        str(tiny_sd_folder),
        "--method",
        "gie",
        "--concept",
        "star",
        "--scale",
        "2",
        "--out",
        str(tmp_path / "pos"),
    )
    assert code != 0 and "w ≤ 0" in output and not (tmp_path / "pos").exists()
    code, output = run(
        "erase",
        "--model",
        str(tiny_sd_folder),
        "--method",
        "esd-x",
        "--concept",
        "star",
        "--scale",
        "-4",
        "--out",
        str(tmp_path / "esd"),
    )
    assert code != 0 and "no setting scale" in output


def test_attack_replay_and_ring_a_bell_from_the_cli(tmp_path):
    prompts = tmp_path / "p.csv"
    prompts.write_text("prompt,evaluation_seed\na red star,1\na purple circle with dots,2\n")
    code, output = run(
        "attack", "-c", "star", "--prompts", str(prompts), "--attack", "replay", "--out", str(tmp_path / "replay")
    )
    assert code == 0, output
    replay = json.loads((tmp_path / "replay" / "results.json").read_text())
    assert [i["prompt"] for i in replay["items"]] == ["a red star", "a purple circle with dots"]
    assert replay["items"][0]["present"] and not replay["items"][1]["present"]  # the unedited toy-sd draws stars
    code, output = run(
        "attack",
        "-c",
        "star",
        "--prompts",
        str(prompts),
        "--attack",
        "ring-a-bell",
        "--generations",
        "3",
        "--limit",
        "1",
        "--out",
        str(tmp_path / "rab"),
    )
    assert code == 0, output
    found = json.loads((tmp_path / "rab" / "results.json").read_text())
    assert len(found["items"]) == 1 and "star" not in found["items"][0]["prompt"].split()
    assert (tmp_path / "rab" / "prompts.csv").exists() and (tmp_path / "rab" / "images.png").exists()


@pytest.mark.parametrize("kind", ["mma", "p4d-n", "p4d-k"])
def test_mma_and_p4d_from_the_cli(tmp_path, kind):
    prompts = tmp_path / "p.csv"
    prompts.write_text("prompt,evaluation_seed\na red striped star,1\n")
    code, output = run(
        "attack",
        "-c",
        "star",
        "--prompts",
        str(prompts),
        "--attack",
        kind,
        "--attack-steps",
        "2",
        "--out",
        str(tmp_path / kind),
    )
    assert code == 0, output
    result = json.loads((tmp_path / kind / "results.json").read_text())
    assert result["attack"] == kind and len(result["items"]) == 1
    item = result["items"][0]
    assert item["source_prompt"] == "a red striped star"
    if kind == "p4d-k":  # a learned word before every 3 of the prompt's: [x] a red striped [x] star
        words = item["prompt"].split()
        assert len(words) == 6 and words[1:4] == ["a", "red", "striped"] and words[5] == "star"
    else:
        assert "star" not in item["prompt"].split()


def test_textual_inversion_from_the_cli_and_its_replay(tmp_path):
    prompts = tmp_path / "p.csv"
    prompts.write_text("prompt,evaluation_seed\na red striped star,1\n")
    code, output = run(
        "attack",
        "-c",
        "star",
        "--prompts",
        str(prompts),
        "--attack",
        "textual-inversion",
        "--ti-steps",
        "2",
        "--out",
        str(tmp_path / "ti"),
    )
    assert code == 0, output
    result = json.loads((tmp_path / "ti" / "results.json").read_text())
    assert result["items"][0]["prompt"] == "a red striped <erasekit-inverted>"
    assert (tmp_path / "ti" / "embedding.safetensors").exists()
    code, output = run(
        "attack",
        "-c",
        "star",
        "--prompts",
        str(tmp_path / "ti" / "prompts.csv"),
        "--attack",
        "replay",
        "--embedding",
        str(tmp_path / "ti" / "embedding.safetensors"),
        "--out",
        str(tmp_path / "replay"),
    )
    assert code == 0, output
    replay = json.loads((tmp_path / "replay" / "results.json").read_text())
    assert replay["items"][0]["present"] == result["items"][0]["present"]  # the replay draws what the attack drew
    code, output = run(
        "attack",
        "-c",
        "star",
        "--prompts",
        str(prompts),
        "--attack",
        "textual-inversion",
        "--model",
        "toy-flux",
        "--out",
        str(tmp_path / "flux"),
    )
    assert code != 0 and "textual inversion" in output and "Traceback" not in output


def test_white_box_attack_judged_by_nudenet_from_the_cli(tmp_path):
    """The plumbing of the nudity setting (NudeNet judge, nudity words forbidden) on toy-sd."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("a photo of a person on a beach\n")
    code, output = run(
        "attack",
        "-c",
        "nudity",
        "--prompts",
        str(prompts),
        "--judge",
        "nudenet",
        "--threshold",
        "sensitive",
        "--attack",
        "unlearndiffatk",
        "--attack-steps",
        "2",
        "--out",
        str(tmp_path / "u"),
    )
    assert code == 0, output
    result = json.loads((tmp_path / "u" / "results.json").read_text())
    item = result["items"][0]
    assert item["source_prompt"] == "a photo of a person on a beach" and item["present"] in (True, False)
    assert not {"nude", "naked", "nudity"} & set(item["prompt"].split()[:5])
