"""Where erasekit writes: overwrite replaces only what erasekit wrote, outputs are checked before any work, a run
folder is resumed only by the run that made it, and what it writes gets the user's usual permissions."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from erasekit.cli import app
from erasekit.outputs import OutputError, StaleRunError, check_output_dir, open_run_folder

runner = CliRunner()


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.fixture
def tiny_sd_folder(tmp_path):
    from erasekit.toy.pipelines import tiny_sd_pipeline

    folder = tmp_path / "tiny-sd"
    tiny_sd_pipeline().save_pretrained(folder)
    return folder


def _user_folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "thesis.tex").write_text("years of work")
    return path


# ------------------------------------------------------------------------------------------------ overwrite


def test_overwrite_never_empties_the_current_folder(tiny_sd_folder, tmp_path, monkeypatch):
    work = _user_folder(tmp_path / "project")
    monkeypatch.chdir(work)
    for out in (".", "", str(work), str(work.parent)):
        code, output = run("erase", "--model", tiny_sd_folder, "--concept", "star", "--out", out, "--overwrite")
        assert code != 0 and "Traceback" not in output, output
        assert "refusing to replace" in output or "is empty" in output, output
        assert (work / "thesis.tex").read_text() == "years of work"


def test_overwrite_never_replaces_the_home_folder(tiny_sd_folder, tmp_path, monkeypatch):
    home = _user_folder(tmp_path / "home")
    (home / "edit.json").write_text("{}")  # even one that looks like an edit folder
    monkeypatch.setenv("HOME", str(home))
    code, output = run("erase", "--model", tiny_sd_folder, "--concept", "star", "--out", home, "--overwrite")
    assert code != 0 and "refusing to replace" in output and "home" in output
    assert (home / "thesis.tex").exists()


def test_overwrite_replaces_an_edit_folder_but_not_a_folder_erasekit_did_not_write(tiny_sd_folder, tmp_path):
    edit = tmp_path / "edit"
    assert run("erase", "--model", tiny_sd_folder, "--concept", "star", "--out", edit)[0] == 0
    code, output = run("erase", "--model", tiny_sd_folder, "--concept", "circle", "--out", edit, "--overwrite")
    assert code == 0, output
    assert json.loads((edit / "edit.json").read_text())["concepts"] == ["circle"]

    mine = _user_folder(tmp_path / "mine")
    code, output = run("erase", "--model", tiny_sd_folder, "--concept", "star", "--out", mine, "--overwrite")
    assert code != 0 and "erasekit did not write it" in output
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.tex"]


def test_edit_save_itself_refuses_to_replace_a_user_folder(tiny_sd, tmp_path):
    from erasekit.api import erase

    edit = erase(tiny_sd, "negprompt", "star")
    mine = _user_folder(tmp_path / "mine")
    with pytest.raises(OutputError, match="did not write"):
        edit.save(mine, overwrite=True)
    assert (mine / "thesis.tex").exists()


def test_an_out_that_is_a_file_is_one_clear_line(tiny_sd_folder, tmp_path):
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    for args in (
        ("erase", "--model", tiny_sd_folder, "--concept", "star", "--out", file),
        ("erase", "--model", tiny_sd_folder, "--concept", "star", "--out", file, "--overwrite"),
        ("export", "--model", tiny_sd_folder, "--edit", tmp_path, "--out", file),
        ("evaluate", "--concept", "star", "--suite", "prompts", "--prompts", file, "--out", file),
        ("attack", "-c", "star", "--prompts", file, "--out", file, "--overwrite"),
    ):
        code, output = run(*args)
        assert code != 0 and "is a file" in output and "Traceback" not in output, (args, output)
    assert file.read_text() == "mine"


# ------------------------------------------------------------------------------------- checked before the work


def test_unwritable_outputs_fail_before_any_work(tiny_sd_folder, tmp_path, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("a model was loaded before the output was checked")

    for where in ("erasekit.models", "erasekit.workflows.erase", "erasekit.methods.apply", "erasekit.workflows.bench"):
        monkeypatch.setattr(f"{where}.load", never, raising=False)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    unwritable = [blocker / "sub" / "out"]
    if _sys_refuses_writes():  # a folder no one may write in, even root (Linux)
        unwritable.append(Path("/sys/erasekit-test/out"))
    for target in unwritable:
        for args in (
            ("erase", "--model", tiny_sd_folder, "--method", "esd-x", "--concept", "star", "--out", target),
            ("evaluate", "--concept", "star", "--json", target / "r.json"),
            ("generate", "-p", "a star", "--out", target / "x.png"),
            ("bench", "-m", "negprompt", "-c", "star", "--out", target),
            ("demo", "--out", target),
        ):
            start = time.time()
            code, output = run(*args)
            assert code != 0 and "Traceback" not in output, (args, output)
            assert "cannot write" in output or "is a file" in output, (args, output)
            assert time.time() - start < 5


def _sys_refuses_writes() -> bool:
    import tempfile

    if not Path("/sys").is_dir():
        return False
    try:
        fd, probe = tempfile.mkstemp(dir="/sys")
    except OSError:
        return True
    os.close(fd)
    os.unlink(probe)
    return False


def test_a_json_path_that_is_a_folder_is_refused_first(tmp_path):
    code, output = run("evaluate", "--concept", "star", "--json", tmp_path)
    assert code != 0 and "is a folder" in output


# ---------------------------------------------------------------------------------------------- run folders


def test_a_run_folder_resumes_only_the_same_run(tmp_path):
    out = tmp_path / "run"
    assert open_run_folder(out, "prompt-suite", {"prompts": "a"}) == out
    (out / "images").mkdir()
    assert open_run_folder(out, "prompt-suite", {"prompts": "a"}) == out  # same record: resumed
    assert (out / "images").exists()
    with pytest.raises(StaleRunError, match="other prompts"):
        open_run_folder(out, "prompt-suite", {"prompts": "b"})
    with pytest.raises(StaleRunError, match="a prompt-suite run, not demo"):
        open_run_folder(out, "demo", {})
    open_run_folder(out, "prompt-suite", {"prompts": "b"}, overwrite=True)  # afresh
    assert not (out / "images").exists()
    mine = _user_folder(tmp_path / "mine")
    for overwrite in (False, True):
        with pytest.raises(OutputError, match="did not write"):
            open_run_folder(mine, "prompt-suite", {}, overwrite=overwrite)
    assert (mine / "thesis.tex").exists()


CIRCLES = "prompt,evaluation_seed\na red circle,1\na blue circle,2\na green circle,3\n"
STARS = "prompt,evaluation_seed\na red star,1\na blue star,2\na green star,3\n"


@pytest.mark.toy_weights
def test_stale_images_of_another_prompt_file_are_never_scored(tmp_path):
    circles, stars = tmp_path / "circles.csv", tmp_path / "stars.csv"
    circles.write_text(CIRCLES)
    stars.write_text(STARS)
    out = tmp_path / "run"
    common = (
        "evaluate",
        "--concept",
        "star",
        "--suite",
        "prompts",
        "--steps",
        "4",
        "--judge",
        "toy",
        "--edit",
        tmp_path / "edit",
        "--out",
        out,
    )
    assert run("erase", "--concept", "star", "--out", tmp_path / "edit")[0] == 0
    code, output = run(*common, "--prompts", circles, "--json", tmp_path / "c.json")
    assert code == 0, output
    assert json.loads((tmp_path / "c.json").read_text())["metrics"]["base_detection_rate"] == 0.0
    code, output = run(*common, "--prompts", stars, "--json", tmp_path / "s.json")
    assert code != 0 and "holds another run" in output and "prompt_file_sha256" in output
    code, output = run(*common, "--prompts", stars, "--json", tmp_path / "s.json", "--overwrite")
    assert code == 0, output
    assert json.loads((tmp_path / "s.json").read_text())["metrics"]["base_detection_rate"] == 1.0


@pytest.mark.toy_weights
def test_a_damaged_png_in_a_run_folder_is_made_again(tmp_path):
    from erasekit.eval.prompt_suite import PromptSuiteConfig, run_prompt_suite
    from erasekit.prompt_sets import load_prompt_file

    prompts_path = tmp_path / "stars.csv"
    prompts_path.write_text(STARS)
    prompts = load_prompt_file(prompts_path)
    config = PromptSuiteConfig(concept="star", steps=4, judge="toy")
    first = run_prompt_suite("toy-sd", [], prompts, config, tmp_path / "run", progress=False)
    damaged = tmp_path / "run" / "images" / "edited" / "00001.png"
    damaged.write_bytes(b"")
    second = run_prompt_suite("toy-sd", [], prompts, config, tmp_path / "run", progress=False)
    assert second["items"] == first["items"]
    assert damaged.stat().st_size > 0


@pytest.mark.toy_weights
def test_attack_out_is_refused_when_it_exists_and_replaced_with_overwrite(tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red star\n")
    args = ("attack", "-c", "star", "--prompts", prompts, "--attack", "replay", "--out", tmp_path / "a")
    assert run(*args)[0] == 0
    code, output = run(*args)
    assert code != 0 and "already exists" in output
    code, output = run(*args, "--overwrite")
    assert code == 0, output
    mine = _user_folder(tmp_path / "mine")
    code, output = run("attack", "-c", "star", "--prompts", prompts, "--attack", "replay", "--out", mine, "--overwrite")
    assert code != 0 and "did not write" in output and (mine / "thesis.tex").exists()


# ---------------------------------------------------------------------------------------------- permissions


def test_edit_folders_and_files_get_the_users_usual_permissions(tiny_sd, tmp_path):
    from erasekit.api import erase, write_json

    old = os.umask(0o022)
    try:
        erase(tiny_sd, "negprompt", "star", tmp_path / "edit")
        write_json(tmp_path / "r.json", {})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "edit").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "edit" / "edit.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o644


def test_check_output_dir_accepts_a_new_folder_under_new_parents(tmp_path):
    assert check_output_dir(tmp_path / "a" / "b" / "c") == tmp_path / "a" / "b" / "c"
    assert not (tmp_path / "a").exists()  # checking writes nothing
