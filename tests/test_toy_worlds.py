"""Which toy world a toy model belongs to, and that every reader of the toy world follows it: the methods'
prompts, the concepts, the judge, the suite and the attack material of a world-v2 model are v2's."""

import json

import pytest
import torch

from erasekit.errors import UnknownConceptError, UnsupportedModelError
from erasekit.eval.attacks import toy_attack_prompts
from erasekit.eval.metrics import ClassifierFeatures
from erasekit.judges import ToyJudge, make_judge
from erasekit.models import load, toy_world_version
from erasekit.toy import worlds
from erasekit.toy.scene_judge import SceneJudge
from erasekit.toy.scenes import SHAPES, STYLES
from erasekit.workflows.erase import check_concepts


def _v2_folder(tmp_path, version=2):
    from erasekit.toy.pipelines import tiny_scene_sd_pipeline

    folder = tmp_path / "v2-sd"
    tiny_scene_sd_pipeline(seed=0).save_pretrained(folder)
    marker = {"toy_world": True, "toy_world_version": version, "height": 64, "width": 64, "num_inference_steps": 2}
    (folder / "erasekit.json").write_text(json.dumps(marker))
    return folder


def test_world_version_of_models(tmp_path):
    assert toy_world_version("toy-sd") == 1  # the shipped models before the v2 weights say nothing: v1
    assert toy_world_version("CompVis/stable-diffusion-v1-4") is None
    folder = _v2_folder(tmp_path)
    assert toy_world_version(folder) == 2
    assert load(folder).toy_world_version == 2
    (folder / "erasekit.json").write_text(json.dumps({"toy_world": True, "toy_world_version": 7}))
    with pytest.raises(UnsupportedModelError, match="toy world 7"):
        toy_world_version(folder)


def test_concepts_follow_the_world(tmp_path):
    folder = _v2_folder(tmp_path)
    check_concepts(folder, ["star", STYLES[1]])  # a style is a v2 concept
    with pytest.raises(UnknownConceptError):
        check_concepts("toy-sd", [STYLES[1]])
    with pytest.raises(UnknownConceptError):
        check_concepts(folder, ["dragon"])
    check_concepts("CompVis/stable-diffusion-v1-4", ["dragon"])  # real models take any text
    assert worlds.concept_head(STYLES[2], 2) == "style"
    with pytest.raises(ValueError):
        worlds.prompts_of(3)


def test_erase_trains_on_the_worlds_prompts(tmp_path, monkeypatch):
    from erasekit.methods import negprompt  # noqa: F401  (registers the method)
    from erasekit.workflows import erase as erase_workflow

    seen = {}
    real_prompts_of = worlds.prompts_of

    def spy(version):
        seen["version"] = version
        return real_prompts_of(version)

    monkeypatch.setattr(erase_workflow.worlds, "prompts_of", spy)
    erase_workflow.erase(_v2_folder(tmp_path), "negprompt", ["star"])
    assert seen["version"] == 2


def test_attack_material_of_a_v2_world():
    material = toy_attack_prompts("night", 4, world_version=2)
    assert all("night" in p for p in material["target"])
    assert not any("night" in p for p in material["clean"])
    assert [("night" in a, "night" in b) for a, b in zip(material["with"], material["without"])] == [
        (True, False)
    ] * len(material["with"])


def test_scene_judge_as_the_toy_judge():
    torch.manual_seed(0)
    net = SceneJudge(width=8, feature_dim=16, style_width=8).eval()
    judge = ToyJudge(net, world_version=2)
    images = torch.rand(3, 3, 64, 64)
    score, present = judge.presence(images, ["star", "night"])
    assert score.shape == (3,) and present.dtype == torch.bool
    out = net.predict(images)
    occupied = out["presence"] == 1
    star = (out["shape"] == SHAPES.index("star")) & occupied
    night = out["style"] == STYLES.index("night")
    assert present.tolist() == (star.any(1) | night).tolist()
    features = ClassifierFeatures(net)
    assert features(images).shape == (3, features.num_features)


def test_make_judge_takes_the_world_version(monkeypatch):
    built = {}
    monkeypatch.setattr(worlds, "load_world_judge", lambda version: built.setdefault("v", version))
    judge = make_judge("auto", ["star"], toy=2)
    assert isinstance(judge, ToyJudge) and judge.world_version == 2 and built["v"] == 2


def test_evaluate_runs_the_scene_suite_on_a_v2_model(tmp_path, monkeypatch):
    from erasekit.eval import ToySuiteConfig
    from erasekit.workflows.evaluate import evaluate_toy

    torch.manual_seed(0)
    net = SceneJudge(width=8, feature_dim=16, style_width=8).eval()
    monkeypatch.setattr(worlds, "load_world_judge", lambda version: net)
    monkeypatch.setattr(worlds, "clip_folder", lambda version: None)
    config = ToySuiteConfig("star", n_target=2, n_synonym=2, n_preserve=2, n_neighbour=2, batch_size=4)
    result = evaluate_toy(_v2_folder(tmp_path), "star", config=config, progress=False)
    assert result.config["world_version"] == 2
    assert "context_acc" in result.metrics and result.metrics["preserve_drop"] == 0.0


def test_provenance_pins_the_judge_of_the_models_world():
    from erasekit.eval import provenance

    v1, v2 = provenance.toy_judge(1), provenance.toy_judge(2)
    assert v1["checkpoint"].startswith("classifier/") and v2["checkpoint"].startswith("judge/")
    assert v1["checkpoint_sha256"] != v2["checkpoint_sha256"] and v2["toy_world_version"] == 2
