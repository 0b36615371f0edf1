"""Prompts of the toy world that the methods train on: captions naming a concept, captions without it, and
captions with the concept swapped for another value of its attribute. Held-out templates are never used."""

from __future__ import annotations

import random
from collections.abc import Sequence

from ..errors import InvalidArgumentError
from . import world


def check_concepts_toy(concepts: Sequence[str]) -> None:
    """Every concept must be one the toy world knows."""
    for concept in concepts:
        world.concept_head(concept)  # raises UnknownConceptError


def toy_anchor_prompts(prompts: Sequence[str], concepts: Sequence[str], anchor: str | None, seed: int = 0) -> list[str]:
    """Each prompt with its target word replaced by ``anchor``, or else by another value of the same head."""
    rng = random.Random(seed)
    out = []
    for prompt in prompts:
        words = prompt.split()
        for concept in concepts:
            options = [v for v in world.HEADS[world.concept_head(concept)] if v != concept]
            swap = (
                anchor if anchor and world.concept_head(anchor) == world.concept_head(concept) else rng.choice(options)
            )
            words = [swap if w == concept else w for w in words]
        out.append(" ".join(words))
    return out


def toy_preserve_prompts(
    concepts: Sequence[str], preserve: Sequence[str] = (), n: int = 64, seed: int = 0
) -> list[str]:
    """The prompts a method keeps in place while it erases ``concepts``: captions without any of them; with
    ``preserve`` concepts, half of them name those (still without the erased ones)."""
    without = toy_prompts(concepts, n=n, seed=seed, without=True)
    if not preserve:
        return without
    named = toy_prompts(preserve, n=n // 2, seed=seed + 100, excluding=concepts)
    return named + without[: n - len(named)]


def toy_prompts(
    concepts: Sequence[str], n: int = 64, seed: int = 0, without: bool = False, excluding: Sequence[str] = ()
) -> list[str]:
    """Training-template captions of the toy world that name each concept by its word (or, with ``without``,
    captions of images that have none of the concepts), showing none of the ``excluding`` concepts. Held-out
    templates are never used."""
    if set(concepts) & set(excluding):
        raise InvalidArgumentError("a concept cannot be both named and excluded")
    avoided = list(excluding) + (list(concepts) if without else [])
    for head, values in world.HEADS.items():
        if set(values) <= set(avoided):
            raise InvalidArgumentError(f"no toy caption avoids every {head} ({', '.join(values)})")
    rng = random.Random(seed)

    def shows_excluded(sample, excluded):
        return any(sample.names[world.concept_head(c)] == c for c in excluded)

    prompts: list[str] = []
    if without:
        while len(prompts) < n:
            sample = world.random_samples(1, rng)[0]
            if not shows_excluded(sample, avoided):
                prompts.append(world.caption(sample, rng))
        return prompts
    per = max(1, n // len(concepts))
    for concept in concepts:
        head = world.concept_head(concept)
        made = 0
        while made < per:
            sample = world.random_samples(1, rng, fixed={head: concept})[0]
            if shows_excluded(sample, excluding):
                continue
            text = world.caption(sample, rng, canonical=True)
            if concept in text.split():
                prompts.append(text)
                made += 1
    return prompts
