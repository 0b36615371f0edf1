"""Every method erases on a world-v2 toy model (tiny, built in code): the workflow hands it v2's scene prompts
at 64×64 and a T5 of 48 tokens, and a style (a phrase of several words) erases as a shape does."""

import json

import pytest
from test_method_contract import CASES

import erasekit.api as ek
from erasekit.generate import generate
from erasekit.methods import get_method
from erasekit.models import load
from erasekit.toy.pipelines import tiny_scene_flux_pipeline, tiny_scene_sd_pipeline


@pytest.fixture(scope="module")
def v2_models(tmp_path_factory):
    folders = {}
    for family, build in (("sd", tiny_scene_sd_pipeline), ("flux", tiny_scene_flux_pipeline)):
        folder = tmp_path_factory.mktemp("world-v2") / f"toy-{family}"
        build(seed=0).save_pretrained(folder)
        marker = {"toy_world": True, "toy_world_version": 2, "height": 64, "width": 64, "num_inference_steps": 2}
        # As the v2 trainers write them (toy_world_version must load without a warning).
        marker |= {"guidance_scale": 7.5} if family == "sd" else {"guidance_scale": 4.0, "max_sequence_length": 48}
        (folder / "erasekit.json").write_text(json.dumps(marker))
        folders[family] = folder
    return folders


def _cases():
    return [
        pytest.param(case_id, family, id=f"{case_id}-{family}")
        for case_id, case in CASES.items()
        for family in get_method(case.method).families
    ]


@pytest.mark.parametrize("case_id, family", _cases())
def test_method_erases_a_shape_on_world_v2(case_id, family, v2_models, request):
    case = CASES[case_id]
    settings = dict(case.settings)
    if case.needs_clip:
        settings["judge_path"] = str(request.getfixturevalue("tiny_clip"))
    edit = ek.erase(v2_models[family], case.method, ["star"], preserve=["circle"], settings=settings, **case.request)
    assert edit.method == case.method and edit.concepts == ["star"]


@pytest.mark.parametrize("method", ["negprompt", "uce", "esd-x", "gie", "sld"])
def test_a_style_erases_on_world_v2(method, v2_models):
    case = next(c for c in CASES.values() if c.method == method)
    edit = ek.erase(v2_models["sd"], method, ["night"], settings=dict(case.settings))
    assert edit.concepts == ["night"]
    images = generate(ek.load_model(v2_models["sd"], [edit]), ["a red star at night"], [0])
    assert images.shape == (1, 3, 64, 64)


def test_the_world_version_is_no_unknown_default(v2_models, caplog):
    with caplog.at_level("WARNING"):
        load(v2_models["flux"])
    assert "ignoring keys" not in caplog.text
