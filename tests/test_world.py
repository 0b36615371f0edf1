"""The toy world: rendering, captions, tokenizers."""

import random

import pytest
import torch

from erasekit.toy import world
from erasekit.toy.tokenizers import build_clip_tokenizer, build_t5_tokenizer


def test_render_is_deterministic_and_in_range():
    samples = world.random_samples(6, random.Random(0))
    a = world.render(samples, torch.Generator().manual_seed(1))
    b = world.render(samples, torch.Generator().manual_seed(1))
    c = world.render(samples, torch.Generator().manual_seed(2))
    assert a.shape == (6, 3, world.IMAGE_SIZE, world.IMAGE_SIZE)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1


def test_render_draws_the_requested_colour():
    # A plain red shape on a light background: the darkest pixels are red-dominant.
    img = world.render([world.Sample(shape=0, colour=0, pattern=0)], torch.Generator().manual_seed(0))[0]
    dark = img.sum(0) < 1.5
    assert dark.sum() > 50
    r, g, b = (img[i][dark].mean() for i in range(3))
    assert r > 0.7 and g < 0.3 and b < 0.3


@pytest.mark.parametrize("shape", range(len(world.SHAPES)))
def test_each_shape_covers_a_sensible_area(shape):
    img = world.render([world.Sample(shape, 4, 0)], torch.Generator().manual_seed(3))[0]
    covered = (img.sum(0) < 2.0).float().mean()
    assert 0.08 < covered < 0.7


def test_captions_name_every_attribute_and_avoid_works():
    rng = random.Random(0)
    for sample in world.random_samples(200, rng):
        names = sample.names
        text = world.caption(sample, rng, canonical=True)
        assert names["shape"] in text and names["colour"] in text
        hidden = world.caption(sample, rng, world.HELDOUT_TEMPLATES, avoid=(names["shape"], names["pattern"]))
        assert names["shape"] not in hidden.split()
        for stem in ("strip", "dot") if names["pattern"] != "plain" else ():
            if stem in names["pattern"]:
                assert stem not in hidden
    assert world.caption(world.Sample(0, 1, 0), random.Random(1), ("{a} {c} {s}",)).startswith("an ")


def test_templates_are_disjoint():
    assert not set(world.TRAIN_TEMPLATES) & set(world.HELDOUT_TEMPLATES)


def test_concept_head_and_unknown_concept():
    assert world.concept_head("star") == "shape"
    assert world.concept_head("red") == "colour"
    assert world.concept_head("striped") == "pattern"
    with pytest.raises(ValueError, match="not a concept of the toy world"):
        world.concept_head("dog")
    for concept, neighbour in world.NEIGHBOURS.items():
        assert world.concept_head(concept) == world.concept_head(neighbour) and concept != neighbour


def test_clip_tokenizer_has_one_token_per_world_word():
    tok = build_clip_tokenizer()
    for word in world.vocabulary():
        ids = tok(word).input_ids
        assert len(ids) == 3, (word, tok.convert_ids_to_tokens(ids))
    # Words outside the world still tokenize (character fallback), and padding reaches 77.
    assert len(tok("a zebra").input_ids) > 3
    assert len(tok("x", padding="max_length", max_length=77).input_ids) == 77


def test_t5_tokenizer_keeps_world_words_whole():
    tok = build_t5_tokenizer()
    pieces = tok.convert_ids_to_tokens(tok("a crimson five-pointed star").input_ids)
    assert pieces == ["\u2581a", "\u2581crimson", "\u2581five", "-", "pointed", "\u2581star", "</s>"]


def _shows(prompt, concept):
    words = {**world.SHAPE_WORDS, **world.COLOUR_WORDS, **world.PATTERN_ADJECTIVES}[concept]
    phrases = world.PATTERN_PHRASES.get(concept, ())
    padded = f" {prompt} "
    return any(f" {w} " in padded for w in words + phrases if w)


def test_toy_request_prompts_keep_the_preserved_concepts_and_never_show_the_erased_ones():
    from erasekit.api import toy_preserve_prompts, toy_prompts

    # Two concepts of one head: captions without them must show neither.
    without = toy_prompts(["star", "heart"], n=60, seed=0, without=True)
    assert not any(_shows(p, "star") or _shows(p, "heart") for p in without)
    assert toy_preserve_prompts(["striped"], seed=4) == toy_prompts(["striped"], seed=4, without=True)
    kept = toy_preserve_prompts(["star"], ["dotted", "triangle"], n=40, seed=1)
    assert len(kept) == 40 and not any(_shows(p, "star") for p in kept)
    named = [p for p in kept if _shows(p, "dotted") or _shows(p, "triangle")]
    assert len(named) >= 20
    assert any(_shows(p, "dotted") for p in named) and any(_shows(p, "triangle") for p in named)
    with pytest.raises(ValueError, match="both named and excluded"):
        toy_prompts(["star"], excluding=["star"])
    with pytest.raises(ValueError, match="avoids every pattern"):
        toy_prompts(["plain", "striped", "dotted"], without=True)
