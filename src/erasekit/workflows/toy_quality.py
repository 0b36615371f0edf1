"""How good the toy world's instruments are: the judge on real images, each toy model's samples, per head."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import torch

from ..generate import generate
from ..models import TOY_MODELS, load
from ..toy import world
from ..toy.classifier import load_classifier


def toy_quality(
    models: Sequence[str] = TOY_MODELS,
    n: int = 300,
    steps: int = 25,
    seed: int = 1234,
    batch_size: int = 100,
    progress: bool = True,
) -> dict[str, Any]:
    """Accuracy of the judge on fresh real images and of each toy model's samples, per head.

    Prompts come from the held-out templates only (with synonyms), one seed per image.
    """
    classifier = load_classifier()
    rng = random.Random(seed)
    samples = world.random_samples(n, rng)
    truth = world.labels(samples)
    real = world.render(samples, torch.Generator().manual_seed(seed))
    report: dict[str, Any] = {
        "n": n,
        "steps": steps,
        "seed": seed,
        "classifier_real": _accuracies(classifier.predict(real), truth),
    }
    prompts = [world.caption(s, rng, world.HELDOUT_TEMPLATES) for s in samples]
    for name in models:
        backbone = load(name)
        images = generate(
            backbone,
            prompts,
            [seed + i for i in range(n)],
            num_inference_steps=steps,
            batch_size=batch_size,
            progress=progress,
        )
        report[name] = _accuracies(classifier.predict(images), truth)
        report[name]["guidance_scale"] = backbone.defaults.guidance_scale
    return report


def _accuracies(pred: dict[str, torch.Tensor], truth: dict[str, torch.Tensor]) -> dict[str, float]:
    acc = {h: round(float((pred[h] == truth[h]).float().mean()), 4) for h in world.HEADS}
    every = torch.stack([pred[h] == truth[h] for h in world.HEADS]).all(0)
    acc["all_heads"] = round(float(every.float().mean()), 4)
    return acc
