"""Prompt-set evaluation: images on disk as they are made, resumable, sharded with accelerate, failures kept."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from erasekit.errors import ErasekitError
from erasekit.eval import prompt_suite
from erasekit.eval.prompt_suite import PromptSuiteConfig, merge_shards, run_prompt_suite
from erasekit.prompt_sets import PromptSetError, load_prompt_set

PROMPTS = """prompt,evaluation_seed
a red star,1
a blue striped circle,2
a green star with dots,3
a yellow square,4
"a star, blue",5
"""


@pytest.fixture
def prompt_file(tmp_path) -> Path:
    path = tmp_path / "prompts.csv"
    path.write_text(PROMPTS)
    return path


@pytest.fixture
def negprompt_edit(tmp_path):
    from erasekit.api import erase

    return erase("toy-sd", "negprompt", ["star"], tmp_path / "edit")


def _config(**kw) -> PromptSuiteConfig:
    return PromptSuiteConfig(concept="star", steps=4, batch_size=3, **kw)


@pytest.mark.toy_weights
def test_prompt_suite_toy_judge_writes_images_and_resumes(tmp_path, prompt_file, negprompt_edit, monkeypatch):
    prompts = load_prompt_set("csv", prompt_file)
    out = tmp_path / "run"
    first = run_prompt_suite("toy-sd", [negprompt_edit], prompts, _config(), out, progress=False)
    assert first["metrics"]["n_images"] == 5 and first["failed"] == []
    assert sorted(p.name for p in (out / "images" / "edited").iterdir()) == [f"{i:05d}.png" for i in range(5)]
    assert {"base_detection_rate", "removal_rate", "mean_ssim", "mean_lpips_style", "fid_toy_vs_base"} <= set(
        first["metrics"]
    )
    assert [r["seed"] for r in first["items"]] == [1, 2, 3, 4, 5]
    assert first["provenance"]["prompt_set"]["rows"] == 5 and first["provenance"]["judge"]["checkpoint_sha256"]

    # A killed run: one image and the results are gone. The rerun makes only the missing image.
    (out / "images" / "edited" / "00003.png").unlink()
    (out / "results.json").unlink()
    made = []
    original = prompt_suite._generate_missing

    def counting(*args, **kwargs):
        n = original(*args, **kwargs)
        made.append(n)
        return n

    monkeypatch.setattr(prompt_suite, "_generate_missing", counting)
    second = run_prompt_suite("toy-sd", [negprompt_edit], prompts, _config(), out, progress=False)
    assert made == [1, 0]  # edited: one image; base: none
    assert second["items"] == first["items"] and second["metrics"] == first["metrics"]


@pytest.mark.toy_weights
def test_prompt_suite_keeps_detector_failures_out_of_the_rates(tmp_path, prompt_file, negprompt_edit, monkeypatch):
    from erasekit.judges import NudeNetDetector

    calls = {"n": 0}
    real = NudeNetDetector.detect

    def flaky(self, images, start=0):
        out = real(self, images, start)
        calls["n"] += 1
        if calls["n"] == 1:  # the edited images of the first chunk: image 2 fails
            out.per_image[2] = None
            out.errors[2] = "RuntimeError: broken image"
        return out

    monkeypatch.setattr(NudeNetDetector, "detect", flaky)
    prompts = load_prompt_set("csv", prompt_file)
    result = run_prompt_suite(
        "toy-sd",
        [negprompt_edit],
        prompts,
        _config(judge="nudenet", threshold="sensitive"),
        tmp_path / "nn",
        progress=False,
    )
    assert result["failed"] == [2] and result["metrics"]["n_failed"] == 1
    assert result["items"][2]["edited"]["present"] is None and "broken" in result["items"][2]["edited"]["error"]
    report = result["nudenet"]["edited"]
    assert report["n_judged"] == 4 and report["failed"] == [2] and len(report["per_class"]) == 9
    assert result["provenance"]["judge"]["threshold"] == 0.45


@pytest.mark.toy_weights
def test_prompt_suite_clip_score_and_fid_from_a_local_clip(tmp_path, prompt_file, negprompt_edit, tiny_clip):
    prompts = load_prompt_set("csv", prompt_file)
    result = run_prompt_suite(
        "toy-sd",
        [negprompt_edit],
        prompts,
        _config(clip_path=str(tiny_clip), limit=3),
        tmp_path / "clip",
        progress=False,
    )
    m = result["metrics"]
    assert m["n_images"] == 3 and 0 <= m["clip_score"] <= 100 and 0 <= m["base_clip_score"] <= 100
    assert m["fid_clip_vs_base"] >= 0
    with pytest.raises(ErasekitError, match="no model at"):
        run_prompt_suite(
            "toy-sd",
            [negprompt_edit],
            prompts,
            _config(clip_path=str(tmp_path / "nowhere"), limit=2),
            tmp_path / "noclip",
            progress=False,
        )


def test_merge_refuses_missing_or_doubled_prompts(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "part-0-of-2.jsonl").write_text(json.dumps({"index": 0}) + "\n" + json.dumps({"index": 2}) + "\n")
    with pytest.raises(ErasekitError, match="process 1"):
        merge_shards(tmp_path, 2, 4)
    (shards / "part-1-of-2.jsonl").write_text(json.dumps({"index": 1}) + "\n")
    with pytest.raises(ErasekitError, match="not judged"):
        merge_shards(tmp_path, 2, 4)
    (shards / "part-1-of-2.jsonl").write_text(json.dumps({"index": 1}) + "\n" + json.dumps({"index": 2}) + "\n")
    with pytest.raises(ErasekitError, match="two processes"):
        merge_shards(tmp_path, 2, 3)


@pytest.mark.parametrize(
    "text, message",
    [
        ('prompt,evaluation_seed\n"a red star,1\nb,2\n', "quoting"),  # an unclosed quote
        ('prompt,evaluation_seed\n"a red" star,1\n', "quoting"),  # a stray quote
        ("prompt,evaluation_seed,extra\na,1,x\nb\n", "fewer fields"),
        ("text,seed\na,1\n", "lacks the column"),
        ("prompt,evaluation_seed\n", "no prompts"),
    ],
)
def test_prompt_files_with_broken_quoting_missing_columns_or_nothing_in_them(tmp_path, text, message):
    path = tmp_path / "prompts.csv"
    path.write_text(text)
    with pytest.raises(PromptSetError, match=message):
        load_prompt_set("csv", path)


def test_a_set_without_a_file_is_fetched_from_the_hub_or_fails_clearly():
    with pytest.raises(PromptSetError, match="hub"):
        load_prompt_set("i2p")  # offline in tests: a clear message, not a hang


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.toy_weights
def test_two_accelerate_processes_equal_one(tmp_path, prompt_file, negprompt_edit):
    """`accelerate launch` with 2 CPU processes: each writes its shard, the main one merges; same result."""
    env = os.environ | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "ERASEKIT_PROGRESS": "0"}
    args = [
        "-m",
        "erasekit",
        "evaluate",
        "--suite",
        "prompts",
        "--prompts",
        str(prompt_file),
        "-c",
        "star",
        "--edit",
        str(tmp_path / "edit"),
        "--steps",
        "4",
        "--batch-size",
        "2",
    ]
    single = subprocess.run(
        [sys.executable, *args, "--out", str(tmp_path / "one")], env=env, capture_output=True, text=True, timeout=300
    )
    assert single.returncode == 0, single.stderr[-2000:]
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(_free_port()),
    ]
    sharded = subprocess.run(
        [*launch, *args, "--out", str(tmp_path / "two")], env=env, capture_output=True, text=True, timeout=300
    )
    assert sharded.returncode == 0, sharded.stderr[-2000:]
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert two["provenance"]["processes"] == 2
    assert sorted(p.name for p in (tmp_path / "two" / "shards").iterdir()) == ["part-0-of-2.jsonl", "part-1-of-2.jsonl"]
    for a, b in zip(one["items"], two["items"]):
        assert (a["index"], a["prompt"], a["seed"], a["edited"], a["base"]) == (
            b["index"],
            b["prompt"],
            b["seed"],
            b["edited"],
            b["base"],
        )
        # Distances run the judge network over differently composed batches: float round-off only.
        assert a["ssim"] == pytest.approx(b["ssim"], abs=1e-5)
        assert a["lpips_style"] == pytest.approx(b["lpips_style"], abs=1e-5)
    for i in range(5):
        edited = [(tmp_path / d / "images" / "edited" / f"{i:05d}.png").read_bytes() for d in ("one", "two")]
        assert edited[0] == edited[1]
    assert one["metrics"]["detection_rate"] == two["metrics"]["detection_rate"]
    # Set-level metrics are computed by the main process alone, over every image (no cross-process gather).
    assert one["metrics"]["fid_toy_vs_base"] == pytest.approx(two["metrics"]["fid_toy_vs_base"], rel=1e-4)


def test_results_json_writes_undefined_rates_as_null(tmp_path):
    from erasekit.api import write_json

    path = write_json(
        tmp_path / "r.json", {"metrics": {"removal_rate": float("nan"), "n": 2.0}, "per_class": [float("nan"), 1.0]}
    )
    text = path.read_text()
    assert "NaN" not in text
    assert json.loads(text) == {"metrics": {"removal_rate": None, "n": 2.0}, "per_class": [None, 1.0]}
