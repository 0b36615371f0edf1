"""The benchmark runner on the shipped toy-sd: results.json, resume, report.html (and a headless-Chromium look)."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from erasekit.errors import ErasekitError
from erasekit.eval.attacks import RingABellConfig, UnlearnDiffAtkConfig
from erasekit.workflows import bench as bench_module
from erasekit.workflows.bench import BenchConfig, run_bench

pytestmark = pytest.mark.toy_weights


def _config(out, **kw) -> BenchConfig:
    return BenchConfig(
        model="toy-sd",
        methods=["negprompt"],
        concepts=["star"],
        out=str(out),
        n=2,
        n_attack=2,
        unlearndiffatk=UnlearnDiffAtkConfig(steps=2, n_timesteps=2),
        ring_a_bell=RingABellConfig(n_tokens=4, population=8, generations=2),
        **kw,
    )


@pytest.fixture(scope="module")
def finished_bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    results = run_bench(_config(out), progress=False, log=lambda *_: None)
    return out, results


def test_bench_fills_every_cell_and_writes_results_and_report(finished_bench):
    out, results = finished_bench
    cells = results["cells"]
    assert set(cells) == {"negprompt/star", "none/star"}  # the unedited model's attack baseline too
    stages = cells["negprompt/star"]["stages"]
    assert {s: v["status"] for s, v in stages.items()} == {"erase": "done", "toy": "done", "attack": "done"}
    assert set(stages["attack"]["attacks"]) == {"unlearndiffatk", "ring-a-bell"}
    rates = {a: d["metrics"]["attack_success_rate"] for a, d in stages["attack"]["attacks"].items()}
    worst = stages["attack"]["worst_case"]
    assert worst["asr"] == max(rates.values()) and rates[worst["attack"]] == worst["asr"]
    assert 0.0 <= stages["toy"]["metrics"]["erasure_rate"] <= 1.0
    saved = json.loads((out / "results.json").read_text())
    assert saved["cells"].keys() == cells.keys()
    assert saved["provenance"]["judge"]["checkpoint_sha256"] and saved["provenance"]["diffusers"]
    # Attack prompts are saved for replay; Ring-A-Bell's are shared by every model of the concept.
    assert (out / "attacks" / "ring-a-bell-star.csv").exists()
    assert (out / "attacks" / "unlearndiffatk-negprompt-star.csv").exists()
    html = (out / "report.html").read_text()
    assert "<svg" in html and "Attack success rate" in html and "data:image/png;base64," in html
    assert "negprompt" in html and "asr_unlearndiffatk" in html
    assert "asr_worst_case" in html and "Worst-case attack success rate" in html


def test_worst_case_is_the_largest_rate_over_the_attacks():
    def result(rate):
        return {"metrics": {"attack_success_rate": rate}}

    got = bench_module.worst_case({"replay": result(0.1), "p4d": result(0.6), "ring-a-bell": result(float("nan"))})
    assert got == {"asr": 0.6, "attack": "p4d", "over": ["p4d", "replay", "ring-a-bell"]}
    assert bench_module.worst_case({"replay": result(None)})["asr"] is None


def test_bench_rerun_skips_finished_stages_and_retries_failed_ones(finished_bench, monkeypatch, tmp_path):
    out, first = finished_bench
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished stage ran again")

    monkeypatch.setattr(bench_module, "_erase_stage", must_not_run)
    monkeypatch.setattr(bench_module, "_toy_stage", must_not_run)
    monkeypatch.setattr(bench_module, "_attack_stage", must_not_run)
    again = run_bench(_config(copy), progress=False, log=lambda *_: None)
    assert again["cells"]["negprompt/star"]["stages"]["toy"] == first["cells"]["negprompt/star"]["stages"]["toy"]

    # A stage that failed is recorded with its error and run again next time.
    results = json.loads((copy / "results.json").read_text())
    results["cells"]["negprompt/star"]["stages"]["toy"] = {"status": "failed", "error": "KeyboardInterrupt"}
    (copy / "results.json").write_text(json.dumps(results))
    monkeypatch.setattr(bench_module, "_toy_stage", lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
    failed = run_bench(_config(copy), progress=False, log=lambda *_: None)
    toy = failed["cells"]["negprompt/star"]["stages"]["toy"]
    assert toy["status"] == "failed" and "boom" in toy["error"]
    assert "boom" in (copy / "report.html").read_text()


def test_bench_refuses_other_settings_in_the_same_folder(finished_bench):
    out, _ = finished_bench
    with pytest.raises(ErasekitError, match="other settings"):
        run_bench(_config(out, seed=1), progress=False, log=lambda *_: None)
    with pytest.raises(ValueError, match="unknown suite"):
        _config(out, suites=["toy", "fid"])


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_report_renders_in_headless_chromium(finished_bench, tmp_path):
    out, _ = finished_bench
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1200,1600",
            "--virtual-time-budget=15000",
            f"--screenshot={shot}",
            (out / "report.html").as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (1600, 1200)
    # Rendered content (text, plot, images), not a blank page: many distinct colours.
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50


def test_bench_runs_the_newer_attacks_and_quotes_the_worst(tmp_path):
    from erasekit.eval.attacks import MMAConfig, P4DConfig, TextualInversionConfig

    config = _config(
        tmp_path,
        suites=["attack"],
        attacks=["mma", "p4d-n", "textual-inversion"],
        mma=MMAConfig(n_tokens=3, steps=1, batch=4),
        p4d=P4DConfig(n_tokens=2, steps=1, select_timesteps=1),
        textual_inversion=TextualInversionConfig(steps=1, batch_size=1),
    )
    results = run_bench(config, progress=False, log=lambda *_: None)
    stage = results["cells"]["negprompt/star"]["stages"]["attack"]
    assert set(stage["attacks"]) == {"mma", "p4d-n", "textual-inversion"}
    assert stage["worst_case"]["over"] == sorted(stage["attacks"])
    assert (tmp_path / "attacks" / "mma-star.csv").exists()  # searched once on the unedited encoder
    assert (tmp_path / "attacks" / "textual-inversion-negprompt-star.safetensors").exists()
    assert "textual_inversion" in config.identity() and "mma" in config.identity()
    assert "mma" not in _config(tmp_path).identity()  # earlier benchmarks' identity is unchanged
