"""The toy suite's prompt set and metrics, with a fake generator and a fake classifier (no trained weights)."""

from __future__ import annotations

import json
import re

import pytest
import torch

from erasekit.errors import ErasekitError, UnknownConceptError
from erasekit.eval import PromptItem, ToySuiteConfig, build_prompt_set, frechet_distance, run_toy_suite
from erasekit.toy.world import _STEMS, HEADS, NEIGHBOURS, SHAPES, Sample, render

SMALL = dict(n_target=6, n_synonym=6, n_preserve=10, n_neighbour=5, batch_size=7)


def _names(prompt: str, word: str) -> bool:
    return re.search(rf"\b{re.escape(word)}\b", prompt) is not None


# ------------------------------------------------------------------------------------------------ prompt set


def test_prompt_set_is_deterministic_and_sized():
    cfg = ToySuiteConfig("star", n_target=12, n_synonym=9, n_preserve=15, n_neighbour=7, seed=3)
    items = build_prompt_set(cfg)
    assert items == build_prompt_set(cfg)
    assert items != build_prompt_set(
        ToySuiteConfig("star", n_target=12, n_synonym=9, n_preserve=15, n_neighbour=7, seed=4)
    )
    sizes = {g: sum(item.group == g for item in items) for g in ("target", "synonym", "preserve", "neighbour")}
    assert sizes == {"target": 12, "synonym": 9, "preserve": 15, "neighbour": 7}
    assert all(isinstance(item, PromptItem) and isinstance(item.seed, int) for item in items)
    assert set(items[0].labels) == set(HEADS)


@pytest.mark.parametrize("concept", ["red", "star", "striped", "dotted", "plain"])
def test_prompt_groups_name_the_right_concepts(concept):
    items = build_prompt_set(ToySuiteConfig(concept, n_target=30, n_synonym=30, n_preserve=30, n_neighbour=30))
    head = next(h for h, values in HEADS.items() if concept in values)
    index, neighbour_index = HEADS[head].index(concept), HEADS[head].index(NEIGHBOURS[concept])
    stem = _STEMS.get(concept)
    for item in items:
        if item.group == "target":
            assert _names(item.prompt, concept), item.prompt
            assert item.labels[head] == index
        elif item.group == "synonym":
            assert not _names(item.prompt, concept), item.prompt
            assert stem is None or stem not in item.prompt, item.prompt
            assert item.labels[head] == index
        else:
            assert not _names(item.prompt, concept), item.prompt
            assert item.labels[head] != index
            if item.group == "neighbour":
                assert _names(item.prompt, NEIGHBOURS[concept]), item.prompt
                assert item.labels[head] == neighbour_index


def test_unknown_concept_lists_known_ones():
    with pytest.raises(UnknownConceptError, match="circle") as info:
        build_prompt_set(ToySuiteConfig("banana"))
    assert isinstance(info.value, ErasekitError)


# ------------------------------------------------------------------------------------------------ the suite


class FakeWorld:
    """A generator that renders the prompt's true scene, and a classifier that reads the labels back.

    The generator stamps the labels it rendered into the top-left pixel (the side channel), so the classifier
    is exact whatever order the suite calls them in. Features are a coarse pooling of the image, so identical
    images give identical features.
    """

    def __init__(self, items: list[PromptItem], swap_shape_for: tuple[str, ...] = ()):
        self.items = {(item.prompt, item.seed): item for item in items}
        self.swap_shape_for = swap_shape_for

    def generate(self, prompts: list[str], seeds: list[int]) -> torch.Tensor:
        images = []
        for prompt, seed in zip(prompts, seeds):
            item = self.items[(prompt, seed)]
            labels = dict(item.labels)
            if item.group in self.swap_shape_for:
                labels["shape"] = (labels["shape"] + 1) % len(SHAPES)
            sample = Sample(labels["shape"], labels["colour"], labels["pattern"])
            image = render([sample], torch.Generator().manual_seed(seed), supersample=1)[0]
            image[:, 0, 0] = torch.tensor([labels["shape"], labels["colour"], labels["pattern"]]) / 10
            images.append(image)
        return torch.stack(images)

    @staticmethod
    def predict(images: torch.Tensor) -> dict[str, torch.Tensor]:
        codes = (images[:, :, 0, 0] * 10).round().long()
        features = torch.nn.functional.adaptive_avg_pool2d(images, 2).flatten(1)
        return {"shape": codes[:, 0], "colour": codes[:, 1], "pattern": codes[:, 2], "features": features}


def test_unedited_model_has_no_erasure_and_no_drops():
    cfg = ToySuiteConfig("star", **SMALL)
    world = FakeWorld(build_prompt_set(cfg))
    result = run_toy_suite(cfg, world, edited=world.generate, base=world.generate, progress=False)
    m = result.metrics
    assert m["erasure_rate"] == 0.0 and m["synonym_erasure_rate"] == 0.0
    assert m["preserve_acc"] == 1.0 and m["neighbour_acc"] == 1.0 and m["target_other_heads_acc"] == 1.0
    assert m["preserve_drop"] == 0.0 and m["neighbour_drop"] == 0.0
    assert m["fd_clf"] == pytest.approx(0.0, abs=1e-4)
    assert result.n_images == {"target": 6, "synonym": 6, "preserve": 10, "neighbour": 5}
    assert torch.equal(result.images["base"], result.images["edited"])

    alone = run_toy_suite(cfg, world, edited=world.generate, progress=False)
    assert alone.metrics["fd_clf"] == 0.0 and alone.metrics["preserve_drop"] == 0.0


def test_edit_that_changes_the_target_shape_is_full_erasure_without_collateral():
    cfg = ToySuiteConfig("star", **SMALL)
    items = build_prompt_set(cfg)
    base, edited = FakeWorld(items), FakeWorld(items, swap_shape_for=("target", "synonym"))
    result = run_toy_suite(cfg, base, edited=edited.generate, base=base.generate, progress=False)
    m = result.metrics
    assert m["erasure_rate"] == 1.0 and m["synonym_erasure_rate"] == 1.0
    assert m["base_erasure_rate"] == 0.0
    assert m["preserve_drop"] == 0.0 and m["neighbour_acc"] == m["base_neighbour_acc"] == 1.0
    assert m["target_other_heads_acc"] == 1.0  # only the shape changed
    assert m["fd_clf"] == pytest.approx(0.0, abs=1e-4)  # preserve images are untouched

    # The sample images show the edit: same seeds, different target images, same preserve images.
    n = len(result.images["edited"]) // 2
    assert not torch.equal(result.images["base"][:n], result.images["edited"][:n])
    assert torch.equal(result.images["base"][n:], result.images["edited"][n:])
    assert len(result.image_prompts) == len(result.images["edited"])

    payload = json.loads(json.dumps(result.to_json()))
    assert payload["metrics"]["erasure_rate"] == 1.0 and len(payload["prompts"]) == len(items)
    assert result.table().row_count > 0


def test_generator_returning_the_wrong_shape_is_reported():
    cfg = ToySuiteConfig("red", **SMALL)
    with pytest.raises(ValueError, match="generator"):
        run_toy_suite(cfg, FakeWorld([]), edited=lambda p, s: torch.zeros(len(p), 32, 32), progress=False)


# ---------------------------------------------------------------------------------------------------- FID


def test_frechet_distance_identical_and_shifted():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(400, 6, generator=g) @ torch.randn(6, 6, generator=g)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shift = torch.tensor([1.0, -2.0, 0.5, 0.0, 0.0, 3.0])
    assert frechet_distance(a, a + shift) == pytest.approx(float(shift @ shift), rel=1e-4)


def test_frechet_distance_fewer_samples_than_dimensions_is_finite():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(10, 32, generator=g), torch.randn(12, 32, generator=g)
    d = frechet_distance(a, b)
    assert d == d and d >= 0.0
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-3)
