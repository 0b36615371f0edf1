"""How good the toy world's instruments are: the judge on real images, each toy model's samples, per head."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import torch

from ..generate import generate
from ..models import TOY_MODELS, load, toy_world_version
from ..toy import world
from ..toy.worlds import load_world_judge


def toy_quality(
    models: Sequence[str] = TOY_MODELS,
    n: int = 300,
    steps: int = 25,
    seed: int = 1234,
    batch_size: int = 100,
    progress: bool = True,
) -> dict[str, Any]:
    """Accuracy of the judge on fresh real images and of each toy model's samples, per head.

    Prompts come from the held-out templates only (with synonyms), one seed per image. A world-v1 model is
    measured with the classifier (``classifier_real``: the classifier on rendered images); a world-v2 model with
    the scene judge and ``scene_quality``'s figures (``scene_judge_real``: the judge on rendered scenes).
    """
    report: dict[str, Any] = {"n": n, "steps": steps, "seed": seed}
    for name in models:
        version = toy_world_version(name)
        if version is None:
            raise ValueError(f"{name} is not a toy model")
        backbone = load(name)

        def fn(prompts: list[str], seeds: list[int]) -> torch.Tensor:
            return generate(
                backbone, prompts, seeds, num_inference_steps=steps, batch_size=batch_size, progress=progress
            )

        if version == 1:
            report[name] = _v1_quality(report, fn, n, seed)
        else:
            report[name] = _v2_quality(report, fn, n, seed, batch_size)
        report[name]["guidance_scale"] = backbone.defaults.guidance_scale
        report[name]["toy_world_version"] = version
    return report


def _v1_quality(report: dict, fn, n: int, seed: int) -> dict[str, float]:
    classifier = load_world_judge(1)
    rng = random.Random(seed)
    samples = world.random_samples(n, rng)
    truth = world.labels(samples)
    if "classifier_real" not in report:
        real = world.render(samples, torch.Generator().manual_seed(seed))
        report["classifier_real"] = _accuracies(classifier.predict(real), truth)
    prompts = [world.caption(s, rng, world.HELDOUT_TEMPLATES) for s in samples]
    return _accuracies(classifier.predict(fn(prompts, [seed + i for i in range(n)])), truth)


def _v2_quality(report: dict, fn, n: int, seed: int, batch_size: int) -> dict[str, float]:
    from ..eval.scene_quality import scene_quality
    from ..toy.scene_judge import judge_accuracy

    judge = load_world_judge(2)
    if "scene_judge_real" not in report:
        report["scene_judge_real"] = {k: round(v, 4) for k, v in judge_accuracy(judge, n=n, seed=seed).items()}
    return {k: round(v, 4) for k, v in scene_quality(fn, judge, n=n, seed=seed, batch_size=batch_size).items()}


def _accuracies(pred: dict[str, torch.Tensor], truth: dict[str, torch.Tensor]) -> dict[str, float]:
    acc = {h: round(float((pred[h] == truth[h]).float().mean()), 4) for h in world.HEADS}
    every = torch.stack([pred[h] == truth[h] for h in world.HEADS]).all(0)
    acc["all_heads"] = round(float(every.float().mean()), 4)
    return acc
