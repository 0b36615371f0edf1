"""Prompts of toy world v2 that the methods train on: scenes naming a concept (in one object, or as the style),
scenes without it, and the same prompts with the concept swapped for another value of its head. Held-out
templates are never used."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from ..errors import InvalidArgumentError
from . import scenes as S


def check_concepts_toy(concepts: Sequence[str]) -> None:
    """Every concept must be one the toy world knows."""
    for concept in concepts:
        S.concept_head(concept)  # raises UnknownConceptError


def _canonical_phrase(concept: str) -> str:
    """How canonical captions name ``concept``: its word, or its style's canonical phrase."""
    if S.concept_head(concept) == "style":
        return S.STYLE_PHRASES[concept][0][1]
    return concept


def _fix_articles(text: str) -> str:
    words = text.split()
    for i, word in enumerate(words[:-1]):
        if word in ("a", "an"):
            words[i] = "an" if words[i + 1][:1] in "aeiou" else "a"
    return " ".join(words)


def swap_concept(prompt: str, concept: str, replacement: str | None) -> str:
    """``prompt`` with ``concept`` (its canonical word or style phrase) replaced by ``replacement``'s, articles
    agreeing; a style replaced by ``None`` or ``"default"`` is dropped (the default style is unnamed)."""
    head = S.concept_head(concept)
    if head == "style":
        phrase = _canonical_phrase(concept)
        new = "" if replacement in (None, "default") else _canonical_phrase(replacement)
        if S.STYLE_PHRASES[concept][0][0] == "prefix" and new and S.STYLE_PHRASES[replacement][0][0] != "prefix":
            text = prompt.replace(f"{phrase} ", "", 1) + f" {new}"
        elif new and S.STYLE_PHRASES[replacement][0][0] == "prefix" and S.STYLE_PHRASES[concept][0][0] != "prefix":
            body = re.sub(rf"\s*{re.escape(phrase)}\b", "", prompt, count=1)
            body = next((body[len(p) :] for p in S.TRAIN_PREFIXES if p and body.startswith(p)), body)
            text = f"{new} {body}"
        else:
            text = re.sub(rf"\b{re.escape(phrase)}\b", new, prompt, count=1)
        return _fix_articles(" ".join(text.split()))
    return _fix_articles(re.sub(rf"\b{re.escape(concept)}\b", replacement or "", prompt))


def toy_anchor_prompts(prompts: Sequence[str], concepts: Sequence[str], anchor: str | None, seed: int = 0) -> list[str]:
    """Each prompt with its target replaced by ``anchor`` (when it is of the target's head), or else by another
    value of the target's head (for a style: another style, or none)."""
    rng = random.Random(seed)
    out = []
    for prompt in prompts:
        for concept in concepts:
            head = S.concept_head(concept)
            if anchor and anchor != "default" and S.concept_head(anchor) == head:
                swap = anchor
            elif head == "style":
                swap = rng.choice([s for s in S.STYLES if s != concept])
            else:
                swap = rng.choice([v for v in S.HEADS[head] if v != concept])
            prompt = swap_concept(prompt, concept, swap)
        out.append(prompt)
    return out


def _scene_naming(rng: random.Random, concept: str, excluding: Sequence[str]) -> S.Scene:
    head = S.concept_head(concept)
    n = rng.choices((1, 2, 3), weights=(0.3, 0.5, 0.2))[0]
    if head == "style":
        return S.random_scene(rng, n_objects=n, style=concept, exclude=tuple(excluding))
    first = S.random_scene(rng, n_objects=1, fixed={head: concept}, exclude=tuple(excluding)).objects[0]
    rest = S.random_scene(rng, n_objects=n, exclude=(*excluding, concept))
    objects = (S.SceneObject(rest.objects[0].cell, first.shape, first.colour, first.pattern), *rest.objects[1:])
    return S.Scene(objects, rest.style)


def toy_prompts(
    concepts: Sequence[str], n: int = 64, seed: int = 0, without: bool = False, excluding: Sequence[str] = ()
) -> list[str]:
    """Training-template captions of scenes that name each concept by its canonical word (in one object, among
    up to three; or as the style), or, with ``without``, captions of scenes showing none of the concepts; no
    scene shows an ``excluding`` concept. Every attribute of every object is named."""
    if set(concepts) & set(excluding):
        raise InvalidArgumentError("a concept cannot be both named and excluded")
    check_concepts_toy([*concepts, *excluding])
    avoided = list(excluding) + (list(concepts) if without else [])
    for head, values in S.HEADS.items():
        if set(values) - {"default"} <= set(avoided) and head != "style":
            raise InvalidArgumentError(f"no toy caption avoids every {head} ({', '.join(values)})")
    rng = random.Random(seed)
    prompts: list[str] = []
    if without:
        while len(prompts) < n:
            scene = S.random_scene(rng, exclude=tuple(avoided))
            prompts.append(S.caption(scene, rng))
        return prompts
    per = max(1, n // len(concepts))
    for concept in concepts:
        phrase = _canonical_phrase(concept)
        made = 0
        while made < per:
            scene = _scene_naming(rng, concept, excluding)
            if S.concept_head(concept) == "style":
                # The canonical phrase (what the methods key on), not one of its synonyms.
                body = S.caption(S.Scene(scene.objects), rng)
                where = S.STYLE_PHRASES[concept][0][0]
                if where == "prefix":
                    body = next((body[len(p) :] for p in S.TRAIN_PREFIXES if p and body.startswith(p)), body)
                text = _fix_articles(f"{phrase} {body}" if where == "prefix" else f"{body} {phrase}")
            else:
                text = S.caption(scene, rng)
                if not re.search(rf"\b{re.escape(phrase)}\b", text):
                    continue  # named through a synonym this time
            prompts.append(text)
            made += 1
    return prompts


def toy_preserve_prompts(
    concepts: Sequence[str], preserve: Sequence[str] = (), n: int = 64, seed: int = 0
) -> list[str]:
    """The prompts a method keeps in place while it erases ``concepts``: captions of scenes without any of them;
    with ``preserve`` concepts, half of them name those (still without the erased ones)."""
    without = toy_prompts(concepts, n=n, seed=seed, without=True)
    if not preserve:
        return without
    named = toy_prompts(preserve, n=n // 2, seed=seed + 100, excluding=concepts)
    return named + without[: n - len(named)]
