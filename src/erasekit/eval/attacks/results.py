"""What an attack found: the attacked prompts, one judged image each, saved as replayable CSV."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ...atomic import atomic_write_text, nan_to_null
from ...generate import generate
from ..metrics import detection_rate


@dataclass
class AttackResult:
    """What one attack did: the prompts it generated from, one judged image per prompt.

    ``source_prompts[i]`` is what the attack started from and ``prompts[i]`` what it generated with
    (identical for a replay); ``present[i]``/``scores[i]`` are the judge's verdict on the attacked image and
    ``pre_present[i]`` its verdict on the image of ``source_prompts[i]`` (same seed), where measured.
    """

    attack: str
    concept: str
    prompts: list[str]
    source_prompts: list[str]
    seeds: list[int]
    present: list[bool]
    scores: list[float]
    pre_present: list[bool] | None = None
    config: dict = field(default_factory=dict)
    images: torch.Tensor | None = None  # a few attacked images, for reports
    pre_images: torch.Tensor | None = None
    embedding: dict | None = None  # textual inversion: {"token", "vector"}, saved beside the prompts

    @property
    def attack_success_rate(self) -> float:
        return detection_rate(self.present)

    @property
    def pre_attack_rate(self) -> float:
        return detection_rate(self.pre_present)

    @property
    def asr_on_erased(self) -> float:
        if self.pre_present is None:
            return math.nan
        return detection_rate([p for p, pre in zip(self.present, self.pre_present) if not pre])

    def metrics(self) -> dict[str, float]:
        return {
            "attack_success_rate": self.attack_success_rate,
            "pre_attack_rate": self.pre_attack_rate,
            "asr_on_erased": self.asr_on_erased,
            "n_prompts": float(len(self.prompts)),
        }

    def to_json(self) -> dict:
        return {
            "attack": self.attack,
            "concept": self.concept,
            "metrics": nan_to_null(self.metrics()),
            "config": dict(self.config),
            "items": [
                {
                    "prompt": p,
                    "source_prompt": s,
                    "seed": seed,
                    "present": bool(x),
                    "score": float(c),
                    "pre_present": None if self.pre_present is None else bool(self.pre_present[i]),
                }
                for i, (p, s, seed, x, c) in enumerate(
                    zip(self.prompts, self.source_prompts, self.seeds, self.present, self.scores)
                )
            ],
        }

    def save_prompts(self, path: str | Path) -> Path:
        """The attacked prompts as a CSV that ``load_prompt_set("csv", path)`` reads back for a replay."""
        return save_prompts_csv(path, self.attack, self.prompts, self.seeds, self.source_prompts)


def save_prompts_csv(
    path: str | Path, attack: str, prompts: Sequence[str], seeds: Sequence[int], sources: Sequence[str]
) -> Path:
    """Prompts an attack found, as ``prompt, evaluation_seed, source_prompt, attack`` rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["prompt", "evaluation_seed", "source_prompt", "attack"])
    for prompt, seed, source in zip(prompts, seeds, sources):
        writer.writerow([prompt, seed, source, attack])
    return atomic_write_text(path, buffer.getvalue())


def judge_images(judge, images: torch.Tensor, concept: str) -> tuple[list[bool], list[float]]:
    score, present = judge.presence(images, [concept])
    return [bool(x) for x in present.cpu()], [float(x) for x in score.cpu()]


def finish_attack(attack, concept, backbone, judge, prompts, sources, seeds, config, keep, gen_kwargs):
    """Generate and judge the attacked prompts and their sources (once, when they are the same prompts)."""
    images = generate(backbone, prompts, seeds, **gen_kwargs)
    present, scores = judge_images(judge, images, concept)
    if list(sources) == list(prompts):
        pre_present, pre_images = list(present), images
    else:
        pre_images = generate(backbone, sources, seeds, **gen_kwargs)
        pre_present = judge_images(judge, pre_images, concept)[0]
    return AttackResult(
        attack,
        concept,
        list(prompts),
        list(sources),
        list(seeds),
        present,
        scores,
        pre_present,
        config,
        images[:keep],
        pre_images[:keep],
    )
