"""How well does a v2 toy model draw what it is asked? The quality figures of the toy models' cards.

Held-out-template prompts of random scenes (one to three objects, every attribute named, styles included), one
seed each, judged by the scene judge with objects matched to cells as the scene suite does:

* per head (shape, colour, pattern): the share of named objects whose matched cell has the named value;
* ``object_acc``: the share of objects right on all three heads; ``scene_acc``: every object right, as many
  objects as named and the style right; ``style_acc`` and ``count_acc`` over all prompts;
* ``bare_acc``: prompts naming one concept alone ("a star", "something striped", "at night"): the share showing it.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import torch

from ..toy.scene_judge import concept_presence
from ..toy.scenes import COLOURS, OBJECT_HEADS, SHAPES, STYLES, bare_caption, caption, random_scene
from .scene_suite import match_objects

GenerateFn = Callable[[list[str], list[int]], torch.Tensor]
BARE_CONCEPTS = (*SHAPES, *COLOURS, "striped", "dotted", *STYLES[1:])


@torch.no_grad()
def scene_quality(
    generate: GenerateFn, judge, n: int = 300, n_bare: int = 4, seed: int = 1234, batch_size: int = 50
) -> dict[str, float]:
    rng = random.Random(f"erasekit-scene-quality:{seed}")
    scenes = [random_scene(rng) for _ in range(n)]
    prompts = [caption(s, rng, heldout=True) for s in scenes]
    hits = {h: 0 for h in OBJECT_HEADS} | {"object": 0}
    objects = scene_ok = style_ok = count_ok = 0
    for start in range(0, n, batch_size):
        chunk = list(range(start, min(n, start + batch_size)))
        images = generate([prompts[i] for i in chunk], chunk)
        out = judge.predict(images)
        for row, i in enumerate(chunk):
            named = [[o.shape, o.colour, o.pattern] for o in scenes[i].objects]
            occupied = [c for c in range(out["presence"].shape[1]) if out["presence"][row, c] == 1]
            cells = [[int(out[h][row, c]) for h in OBJECT_HEADS] for c in occupied]
            assignment = match_objects(named, cells)
            right = []
            for o, c in enumerate(assignment):
                got = cells[c] if c is not None else [None] * 3
                for k, h in enumerate(OBJECT_HEADS):
                    hits[h] += got[k] == named[o][k]
                right.append(got == named[o])
            objects += len(named)
            hits["object"] += sum(right)
            style = int(out["style"][row]) == scenes[i].style
            count = len(occupied) == len(named)
            style_ok += style
            count_ok += count
            scene_ok += all(right) and style and count
    metrics = {f"{h}_acc": hits[h] / objects for h in OBJECT_HEADS}
    metrics |= {
        "object_acc": hits["object"] / objects,
        "scene_acc": scene_ok / n,
        "style_acc": style_ok / n,
        "count_acc": count_ok / n,
    }
    shown = total = 0
    per_concept = {}
    for concept in BARE_CONCEPTS:
        texts = [bare_caption(concept, rng)[0] for _ in range(n_bare)]
        seeds = [10_000 + total + k for k in range(n_bare)]
        _, present = concept_presence(judge, generate(texts, seeds), concept)
        per_concept[concept] = float(present.float().mean())
        shown += int(present.sum())
        total += n_bare
    metrics["bare_acc"] = shown / total
    metrics |= {f"bare_acc_{c}": v for c, v in per_concept.items()}
    return metrics
