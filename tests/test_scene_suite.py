"""The scene suite's prompt set and metrics, with an oracle judge: the generator writes each prompt's index into
its image, the judge reads it back and reports the scene the generator meant (edited or not)."""

import math

import pytest
import torch

from erasekit.errors import UnknownConceptError
from erasekit.eval.scene_suite import SceneSuiteConfig, build_prompt_set, match_objects, run_scene_suite
from erasekit.toy.scenes import OBJECT_HEADS, SHAPES, STYLES

CFG = dict(n_target=12, n_synonym=12, n_preserve=18, n_neighbour=9, batch_size=7)


class OracleJudge:
    """Reads scenes from a table indexed by the value written in pixel (0, 0, 0)."""

    def __init__(self, table):
        self.table = table

    def predict(self, images):
        b = images.shape[0]
        out = {h: torch.full((b, 4), -1) for h in OBJECT_HEADS}
        out["presence"] = torch.zeros(b, 4, dtype=torch.long)
        out["style"] = torch.zeros(b, dtype=torch.long)
        for i in range(b):
            style, objects = self.table[int(round(float(images[i, 0, 0, 0]) * 1000))]
            out["style"][i] = style
            for cell, obj in enumerate(objects):  # the judge sees them in other cells than named: matching matters
                out["presence"][i, 3 - cell] = 1
                for k, h in enumerate(OBJECT_HEADS):
                    out[h][i, 3 - cell] = obj[k]
        out["features"] = torch.stack([images[:, 0, 0, 0], images[:, 0, 0, 0] ** 2], 1)
        for h, values in OBJECT_HEADS.items():
            out[f"probs_{h}"] = torch.nn.functional.one_hot(out[h].clamp_min(0), len(values)).float()
        out["probs_style"] = torch.nn.functional.one_hot(out["style"], len(STYLES)).float()
        return out


def _world(items, change=None):
    """A generator and its oracle: ``change(labels) -> labels`` says what the edited model draws instead."""
    table = {}
    lookup = {(it.prompt, it.seed): k for k, it in enumerate(items)}

    def generate(prompts, seeds):
        images = torch.zeros(len(prompts), 3, 64, 64)
        for i, key in enumerate(zip(prompts, seeds)):
            k = lookup[key]
            labels = items[k].labels
            labels = change(labels) if change else labels
            table[k] = (labels["style"], [list(o) for o in labels["objects"]])
            images[i, 0, 0, 0] = k / 1000
        return images

    return generate, OracleJudge(table)


def test_prompt_set_groups_and_determinism():
    cfg = SceneSuiteConfig("star", **CFG)
    items = build_prompt_set(cfg)
    assert [it.group for it in items] == ["target"] * 12 + ["synonym"] * 12 + ["preserve"] * 18 + ["neighbour"] * 9
    assert [it.prompt for it in items] == [it.prompt for it in build_prompt_set(cfg)]
    star = SHAPES.index("star")
    for it in items:
        shapes = [o[0] for o in it.labels["objects"]]
        if it.group in ("target", "synonym"):
            assert shapes.count(star) == 1
        else:
            assert star not in shapes and "star" not in it.prompt
        if it.group == "synonym":
            assert "star" not in it.prompt.split()
    assert any(len(it.labels["objects"]) >= 2 for it in items if it.group == "target")
    with pytest.raises(UnknownConceptError):
        build_prompt_set(SceneSuiteConfig("dog"))


def test_style_prompt_set():
    items = build_prompt_set(SceneSuiteConfig("night", **CFG))
    night = STYLES.index("night")
    for it in items:
        assert (it.labels["style"] == night) == (it.group in ("target", "synonym"))
        if it.group == "synonym":
            assert "night" not in it.prompt


def test_match_objects_prefers_the_agreeing_assignment():
    assert match_objects([[0, 1, 2], [3, 4, 0]], [[3, 4, 0], [0, 1, 1]]) == [1, 0]
    assert match_objects([[0, 1, 2], [3, 4, 0]], [[3, 4, 0]]) == [None, 0]
    assert match_objects([[0, 1, 2]], []) == [None]


def test_unedited_oracle_is_perfect_and_an_eraser_is_measured():
    cfg = SceneSuiteConfig("star", **CFG)
    items = build_prompt_set(cfg)
    base, judge = _world(items)
    star, triangle = SHAPES.index("star"), SHAPES.index("triangle")

    def erase(labels):  # every star drawn as a triangle; nothing else changes
        return labels | {"objects": [[triangle if o[0] == star else o[0], *o[1:]] for o in labels["objects"]]}

    edited, judge_edited = _world(items, erase)

    class Both:
        def predict(self, images):
            return judge_edited.predict(images) if self.edited else judge.predict(images)

    # One judge for both generators: edited and base images are told apart by which table was filled last.
    both = Both()

    def gen_edited(p, s):
        both.edited = True
        return edited(p, s)

    def gen_base(p, s):
        both.edited = False
        return base(p, s)

    result = run_scene_suite(cfg, both, gen_edited, gen_base, progress=False)
    m = result.metrics
    assert m["base_erasure_rate"] == 0.0 and m["base_preserve_acc"] == 1.0 and m["base_context_acc"] == 1.0
    assert m["erasure_rate"] == 1.0 and m["synonym_erasure_rate"] == 1.0
    assert m["context_acc"] == 1.0  # the other objects are untouched
    assert m["preserve_acc"] == 1.0 and m["preserve_drop"] == 0.0
    assert m["fd_clf"] == pytest.approx(0.0, abs=1e-3)
    from rich.console import Console

    console = Console(record=True, width=160)
    console.print(result.table())
    shown = console.export_text()
    assert "context_acc" in shown and "preserve_acc (style)" in shown
    assert math.isnan(m["clip_score"])
    assert result.n_images == {"target": 12, "synonym": 12, "preserve": 18, "neighbour": 9}


def test_an_edit_that_wrecks_the_scene_loses_context_and_preservation():
    cfg = SceneSuiteConfig("star", **CFG)
    items = build_prompt_set(cfg)

    def wreck(labels):  # drops every object but the first
        return labels | {"objects": labels["objects"][:1]}

    edited, judge = _world(items, wreck)
    m = run_scene_suite(cfg, judge, edited, progress=False).metrics
    multi = [it for it in items if it.group == "preserve" and len(it.labels["objects"]) > 1]
    assert m["preserve_acc"] == pytest.approx(1 - len(multi) / 18)
    assert m["context_acc"] < 1.0


def test_scene_quality_with_an_oracle_that_draws_what_it_reads():
    from erasekit.eval.scene_quality import BARE_CONCEPTS, scene_quality
    from erasekit.toy.scenes import COLOURS, PATTERNS, parse_caption

    table = {}

    def generate(prompts, seeds):
        images = torch.zeros(len(prompts), 3, 64, 64)
        for i, text in enumerate(prompts):
            parsed = parse_caption(text)
            objects = [
                [
                    SHAPES.index(o["shape"] or "circle"),
                    COLOURS.index(o["colour"] or "red"),
                    PATTERNS.index(o["pattern"] or "plain"),
                ]
                for o in parsed.objects
            ] or [[0, 0, 0]]
            key = len(table)
            table[key] = (STYLES.index(parsed.style or "default"), objects)
            images[i, 0, 0, 0] = key / 1000
        return images

    m = scene_quality(generate, OracleJudge(table), n=20, n_bare=1, batch_size=8)
    assert m["scene_acc"] == 1.0 and m["object_acc"] == 1.0 and m["bare_acc"] == 1.0
    assert set(BARE_CONCEPTS) <= {k.removeprefix("bare_acc_") for k in m}
