"""The shipped toy weights: they load offline, and the judge and toy-sd/toy-flux are as good as their cards say.

These are smaller samples than `erasekit toy eval` (which measures the cards' numbers on 300 prompts); the
bounds leave room for that sampling noise but catch a broken or swapped checkpoint.
"""

import random

import pytest
import torch

from erasekit.api import load_classifier
from erasekit.generate import generate
from erasekit.models import load, toy_weights_dir
from erasekit.toy import world

pytestmark = pytest.mark.toy_weights


def _accuracy(pred, truth):
    return {h: float((pred[h] == truth[h]).float().mean()) for h in world.HEADS}


def test_shipped_weights_are_safetensors_and_small():
    files = [p for p in toy_weights_dir().rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".pth", ".ckpt")]
    assert sum(p.stat().st_size for p in files) < 40 * 2**20  # the toy-world issue's budget


def test_shipped_scene_judge_on_fresh_scenes():
    from erasekit.toy.scene_judge import judge_accuracy, load_scene_judge

    acc = judge_accuracy(load_scene_judge(), n=300, seed=777)  # the card: ≥ 99.8 % per head on 1000 scenes
    assert min(acc.values()) >= 0.98, acc


def test_shipped_toy_clip_retrieves_fresh_scenes():
    from erasekit.eval.metrics import clip_score
    from erasekit.toy import clip as toy_clip

    folder = toy_weights_dir() / "clip"
    model, tokenizer = toy_clip.load_toy_clip(folder)
    images, captions, ceiling = toy_clip.full_caption_batch(128, seed=4321)
    acc = toy_clip.evaluate_clip(model, tokenizer, images, captions)
    assert min(acc.values()) >= 0.85 and ceiling > 0.9, acc  # the card: retrieval 0.969, shape swaps 0.955
    # The same folder serves the metrics' CLIP path: matched captions score above shuffled ones.
    matched = clip_score(images[:32], captions[:32], folder)
    shuffled = clip_score(images[:32], captions[1:33], folder)
    assert matched > shuffled + 5, (matched, shuffled)


def test_classifier_on_fresh_real_images():
    classifier = load_classifier()
    samples = world.random_samples(200, random.Random(99))
    images = world.render(samples, torch.Generator().manual_seed(99))
    acc = _accuracy(classifier.predict(images), world.labels(samples))
    assert min(acc.values()) >= 0.98, acc


@pytest.mark.parametrize("name, floor", [("toy-sd", 0.85), ("toy-flux", 0.7)])
def test_toy_model_samples_are_judged_correct(name, floor):
    rng = random.Random(7)
    samples = world.random_samples(24, rng)
    prompts = [world.caption(s, rng, world.HELDOUT_TEMPLATES) for s in samples]
    backbone = load(name, device="cpu")
    images = generate(backbone, prompts, list(range(24)))
    acc = _accuracy(load_classifier().predict(images), world.labels(samples))
    assert min(acc.values()) >= floor, acc
