"""The Python API takes one item where it takes a list, names the argument of a wrong type, merges duplicate
concepts and refuses control characters in them."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import erasekit.api as ek
from erasekit.arguments import InvalidConceptError, as_list
from erasekit.cli import app
from erasekit.methods import EraseRequest
from erasekit.pipeline_state import applied_edits


def test_a_string_is_one_concept_not_its_letters(tiny_sd):
    edit = ek.erase(tiny_sd, "negprompt", "star")
    assert edit.concepts == ["star"] and edit.data["negative_prompt"] == "star"
    request = EraseRequest(targets="star", preserve="circle")
    assert request.targets == ["star"] and request.preserve == ["circle"]


def test_a_single_edit_folder_or_edit_is_one_edit(tmp_path):
    from erasekit.toy.pipelines import tiny_sd_pipeline

    model = tmp_path / "tiny-sd"
    tiny_sd_pipeline().save_pretrained(model)
    edit = ek.erase(str(model), "negprompt", ["star"], tmp_path / "edit")
    for edits in (str(tmp_path / "edit"), tmp_path / "edit", edit, [edit]):
        backbone = ek.load_model(model, edits)
        assert applied_edits(backbone.pipeline)[0]["concepts"] == ["star"]


@pytest.mark.parametrize(
    "call, argument",
    [
        (lambda m: ek.erase(m, "negprompt", 5), "concepts"),
        (lambda m: ek.erase(m, "negprompt", ["star", 5]), "concepts"),
        (lambda m: ek.erase(m, "negprompt", "star", preserve=3.0), "preserve"),
        (lambda m: ek.erase(m, "negprompt", "star", anchor=["square"]), "anchor"),
        (lambda m: ek.erase(m, "negprompt", "star", out=7), "out"),
        (lambda m: ek.erase(m, "negprompt", "star", settings=["steps=3"]), "settings"),
        (lambda m: ek.erase(m, "negprompt", "star", seed="0"), "seed"),
        (lambda m: ek.erase(42, "negprompt", "star"), "model"),
        (lambda m: ek.load_model(m, 3), "edits"),
        (lambda m: ek.evaluate_toy("toy-sd", "star", edits=[None]), "edits"),
    ],
)
def test_a_wrong_type_is_a_type_error_naming_the_argument(tiny_sd, call, argument):
    with pytest.raises(TypeError, match=argument):
        call(tiny_sd)


def test_duplicate_concepts_are_merged(tiny_sd):
    edit = ek.erase(tiny_sd, "negprompt", ["star", " star", "circle", "star"])
    assert edit.concepts == ["star", "circle"]


@pytest.mark.parametrize("concept", ["st\x07ar", "star\n", "a\u200bstar", "\x1b[31mstar"])
def test_control_characters_in_a_concept_are_refused(tiny_sd, concept):
    if concept.strip() != concept:  # a trailing newline is only whitespace: it is stripped, not refused
        assert ek.erase(tiny_sd, "negprompt", concept).concepts == [concept.strip()]
        return
    with pytest.raises(InvalidConceptError, match="control character"):
        ek.erase(tiny_sd, "negprompt", concept)


def test_control_characters_from_the_cli_are_one_clear_line(tmp_path):
    result = CliRunner().invoke(app, ["erase", "--concept", "st\x07ar", "--out", str(tmp_path / "e")])
    assert result.exit_code != 0 and "control character" in result.output and "Traceback" not in result.output


def test_as_list():
    assert as_list(None, "x") == [] and as_list("a", "x") == ["a"] and as_list(("a", "b"), "x") == ["a", "b"]
    with pytest.raises(TypeError, match="x must be a str"):
        as_list(b"a", "x")
