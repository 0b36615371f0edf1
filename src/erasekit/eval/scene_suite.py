"""The toy suite on toy world v2's scenes: does an edit erase a concept, and keep the rest of the scene?

Given a target concept (a shape, colour or pattern of one object, or a style), a fixed, seeded prompt set in four
groups, each prompt a scene of one to three objects:

* ``target``: the target named by its canonical word, in one object (or as the style) beside other objects;
* ``synonym``: the same, the target named only through synonyms sharing no stem with it, in held-out templates;
* ``preserve``: scenes without the target;
* ``neighbour``: scenes naming the target's nearest concept (``NEIGHBOURS``) and not the target.

The judge reads each cell; a prompt's objects are matched to the occupied cells (the assignment agreeing on most
named attributes), since a model places objects where it likes. Metrics:

* ``erasure_rate`` / ``synonym_erasure_rate``: share of target / synonym images in which the judge sees the
  target nowhere (no object with it; for a style, another style);
* ``context_acc``: share of target images whose *other* objects are all there and right (erasing the star must
  keep the blue circle next to it); for a style target, every object;
* ``preserve_acc`` (``preserve_drop`` against the unedited model) and ``neighbour_acc``: share of images whose
  whole scene is right — as many objects as named, each right on every head, the style right;
* ``fd_clf``: Fréchet distance of judge features, edited vs unedited, on the preserve images;
* ``clip_score``: with a CLIP folder, the CLIP score of the preserve images against their prompts.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import random
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from ..errors import InvalidArgumentError
from ..progress import progress_bar
from ..toy.scenes import (
    _STEMS,
    NEIGHBOURS,
    OBJECT_HEADS,
    STYLE_STEMS,
    STYLES,
    Scene,
    SceneObject,
    caption,
    concept_head,
    random_scene,
)
from .metrics import frechet_distance
from .toy_suite import GROUPS, PromptItem, ToySuiteResult, _call_generator

GenerateFn = Callable[[list[str], list[int]], torch.Tensor]

HEADLINE_METRICS = (
    "erasure_rate",
    "synonym_erasure_rate",
    "context_acc",
    "preserve_acc",
    "preserve_drop",
    "neighbour_acc",
    "base_neighbour_acc",
    "neighbour_drop",
    "fd_clf",
    "clip_score",
)
_NUM_SAMPLE_IMAGES = 8
_MAX_TRIES = 500


@dataclass
class SceneSuiteConfig:
    """What the scene suite evaluates and how many prompts of each group it draws (the v1 suite's sizes)."""

    concept: str
    n_target: int = 120
    n_synonym: int = 120
    n_preserve: int = 180
    n_neighbour: int = 90
    seed: int = 0
    batch_size: int = 50


def _mentions(prompt: str, concept: str) -> bool:
    """Whether ``prompt`` names ``concept``: its word, or a stem that gives it away ("with stripes")."""
    if re.search(rf"\b{re.escape(concept)}\b", prompt):
        return True
    stem = _STEMS.get(concept, STYLE_STEMS.get(concept))
    return stem is not None and stem in prompt


def _names(prompt: str, concept: str) -> bool:
    if concept_head(concept) == "style":
        return STYLE_STEMS[concept] in prompt
    return re.search(rf"\b{re.escape(concept)}\b", prompt) is not None


def _scene_with(rng: random.Random, concept: str | None, exclude: tuple[str, ...]) -> Scene:
    """Two or three objects (one for a fifth of the scenes); ``concept`` in the first object or as the style;
    no ``exclude`` concept anywhere (in particular, the target in no other object)."""
    n = rng.choices((1, 2, 3), weights=(0.2, 0.55, 0.25))[0]
    if concept is None:
        return random_scene(rng, n_objects=n, exclude=exclude)
    head = concept_head(concept)
    if head == "style":
        return random_scene(rng, n_objects=n, style=concept, exclude=exclude)
    first = random_scene(rng, n_objects=1, fixed={head: concept}, exclude=exclude)
    rest = random_scene(rng, n_objects=n, exclude=(*exclude, concept))
    cells = [o.cell for o in rest.objects]
    obj = first.objects[0]
    objects = (SceneObject(cells[0], obj.shape, obj.colour, obj.pattern), *rest.objects[1:])
    return Scene(objects, rest.style)


def _labels(scene: Scene) -> dict:
    return {"style": scene.style, "objects": [[o.shape, o.colour, o.pattern] for o in scene.objects]}


def build_prompt_set(cfg: SceneSuiteConfig) -> list[PromptItem]:
    """The suite's prompts, grouped in the order target, synonym, preserve, neighbour; deterministic given ``cfg``.

    Raises:
        UnknownConceptError: ``cfg.concept`` is not a concept of the toy world.
    """
    concept = cfg.concept
    concept_head(concept)
    neighbour = NEIGHBOURS.get(concept)
    plans = {
        "target": (cfg.n_target, concept, (), lambda t: _names(t, concept), {"heldout": None}),
        "synonym": (
            cfg.n_synonym,
            concept,
            (),
            lambda t: not _mentions(t, concept),
            {"heldout": True, "avoid": (concept,)},
        ),
        "preserve": (cfg.n_preserve, None, (concept,), lambda t: not _mentions(t, concept), {"heldout": None}),
    }
    if neighbour is not None:
        plans["neighbour"] = (
            cfg.n_neighbour,
            neighbour,
            (concept,),
            lambda t: _names(t, neighbour) and not _mentions(t, concept),
            {"heldout": None},
        )
    items: list[PromptItem] = []
    for group, (count, named, exclude, accept, kwargs) in plans.items():
        key = f"erasekit-scene-suite:{cfg.seed}:{concept}:{group}"
        rng, seed_rng = random.Random(key), random.Random(key + ":seeds")
        for _ in range(count):
            scene = _scene_with(rng, named, exclude)
            for _ in range(_MAX_TRIES):
                heldout = kwargs["heldout"] if kwargs["heldout"] is not None else rng.random() < 0.3
                text = caption(scene, rng, heldout=heldout, avoid=kwargs.get("avoid", ()))
                if accept(text):
                    break
            else:
                raise RuntimeError(f"no caption of {scene} fits the {group} group in {_MAX_TRIES} tries")
            items.append(PromptItem(group, text, seed_rng.randrange(2**31), _labels(scene)))
    return items


# --------------------------------------------------------------------------------------------- judging


def match_objects(named: list[list[int]], cells: list[list[int]]) -> list[int | None]:
    """Assign each named object (shape, colour, pattern) an occupied cell's judged attributes: the assignment
    with the most agreeing attributes (the first such in a fixed order). Objects beyond the occupied cells get
    ``None``."""
    best, best_score = [None] * len(named), -1
    k = min(len(named), len(cells))
    for chosen in itertools.permutations(range(len(cells)), k):
        for objs in itertools.combinations(range(len(named)), k):
            score = sum(sum(a == b for a, b in zip(named[o], cells[c])) for o, c in zip(objs, chosen))
            if score > best_score:
                best_score = score
                best = [None] * len(named)
                for o, c in zip(objs, chosen):
                    best[o] = c
    return best


def judge_prompt(item: PromptItem, judged: dict[str, torch.Tensor], i: int, concept: str) -> dict[str, bool]:
    """Per-image outcomes: ``target_seen``, ``context_right``, ``scene_right``, and per head ``<head>_right``
    (every object's head right)."""
    head = concept_head(concept)
    occupied = [c for c in range(judged["presence"].shape[1]) if judged["presence"][i, c] == 1]
    cells = [[int(judged[h][i, c]) for h in OBJECT_HEADS] for c in occupied]
    named = item.labels["objects"]
    assignment = match_objects(named, cells)
    style = int(judged["style"][i])

    def right(o: int) -> bool:
        c = assignment[o]
        return c is not None and cells[c] == named[o]

    if head == "style":
        target_seen = STYLES[style] == concept
        context = [o for o in range(len(named))]
    else:
        h = list(OBJECT_HEADS).index(head)
        value = OBJECT_HEADS[head].index(concept)
        target_seen = any(cell[h] == value for cell in cells)
        context = [o for o in range(len(named)) if named[o][h] != value]
    all_right = all(right(o) for o in range(len(named)))
    out = {
        "target_seen": target_seen,
        "context_right": all(right(o) for o in context),
        "scene_right": all_right and len(occupied) == len(named) and style == item.labels["style"],
        "style_right": style == item.labels["style"],
        "count_right": len(occupied) == len(named),
    }
    for k, h in enumerate(OBJECT_HEADS):
        out[f"{h}_right"] = all(
            assignment[o] is not None and cells[assignment[o]][k] == named[o][k] for o in range(len(named))
        )
    return out


class _Outputs:
    def __init__(self, items: list[PromptItem], concept: str, keep: list[int]):
        self.items, self.concept = items, concept
        self.rows: list[dict[str, bool]] = []
        self.features: list[torch.Tensor] = []
        self.images_for_clip: list[torch.Tensor] = []
        self._keep = {index: slot for slot, index in enumerate(keep)}
        self._kept: dict[int, torch.Tensor] = {}

    def add(self, start: int, images: torch.Tensor, judge, keep_for_clip: list[bool]) -> None:
        judged = judge.predict(images)
        for i in range(images.shape[0]):
            self.rows.append(judge_prompt(self.items[start + i], judged, i, self.concept))
            if start + i in self._keep:
                self._kept[self._keep[start + i]] = images[i].clone()
            if keep_for_clip[i]:
                self.images_for_clip.append(images[i])
        self.features.append(judged["features"].float())


def _rate(rows: list[dict], groups: list[str], group: str, key: str, negate: bool = False) -> float:
    values = [r[key] for r, g in zip(rows, groups) if g == group]
    if not values:
        return math.nan
    rate = sum(values) / len(values)
    return 1 - rate if negate else rate


def _metrics(rows: list[dict], groups: list[str]) -> dict[str, float]:
    m = {
        "erasure_rate": _rate(rows, groups, "target", "target_seen", negate=True),
        "synonym_erasure_rate": _rate(rows, groups, "synonym", "target_seen", negate=True),
        "context_acc": _rate(rows, groups, "target", "context_right"),
        "preserve_acc": _rate(rows, groups, "preserve", "scene_right"),
        "neighbour_acc": _rate(rows, groups, "neighbour", "scene_right"),
    }
    for key in ("shape_right", "colour_right", "pattern_right", "style_right", "count_right"):
        m[f"preserve_{key.replace('_right', '_acc')}"] = _rate(rows, groups, "preserve", key)
    return m


def run_scene_suite(
    cfg: SceneSuiteConfig,
    judge,
    edited: GenerateFn,
    base: GenerateFn | None = None,
    clip_model: str | None = None,
    progress: bool = True,
) -> ToySuiteResult:
    """Generate the prompt set with ``edited`` (and ``base``), judge every image and compute the metrics above.

    ``metrics[name]`` is the edited model's value and ``metrics["base_" + name]`` the unedited one's. Without
    ``base`` the edited model is its own baseline (every drop 0). ``clip_model``: a CLIP folder for
    ``clip_score`` (the toy CLIP on the toy world); ``NaN`` without one.
    """
    items = build_prompt_set(cfg)
    if not items:
        raise InvalidArgumentError("the scene suite's prompt set is empty: every group size in the config is 0")
    groups = [item.group for item in items]
    keep = [i for i, g in enumerate(groups) if g == "target"][:_NUM_SAMPLE_IMAGES]
    keep += [i for i, g in enumerate(groups) if g == "preserve"][:_NUM_SAMPLE_IMAGES]
    generators = {"edited": edited} if base is None else {"edited": edited, "base": base}
    outputs = {name: _Outputs(items, cfg.concept, keep) for name in generators}
    total = len(items) * len(generators)
    bar_context = progress_bar(f"scene suite: {cfg.concept}", total) if progress else contextlib.nullcontext(None)
    with torch.no_grad(), bar_context as bar:
        for start in range(0, len(items), max(1, cfg.batch_size)):
            batch = items[start : start + cfg.batch_size]
            for name, fn in generators.items():
                images = _call_generator(fn, [x.prompt for x in batch], [x.seed for x in batch], name)
                outputs[name].add(start, images, judge, [x.group == "preserve" for x in batch])
                if bar is not None:
                    bar.advance(len(batch))
    edited_out = outputs["edited"]
    base_out = outputs.get("base", edited_out)
    metrics = _metrics(edited_out.rows, groups)
    base_metrics = _metrics(base_out.rows, groups)
    metrics["preserve_drop"] = base_metrics["preserve_acc"] - metrics["preserve_acc"]
    metrics["neighbour_drop"] = base_metrics["neighbour_acc"] - metrics["neighbour_acc"]
    preserve = torch.tensor([g == "preserve" for g in groups])
    feats, base_feats = torch.cat(edited_out.features), torch.cat(base_out.features)
    if base is None:
        metrics["fd_clf"] = 0.0
    elif int(preserve.sum()) >= 2:
        metrics["fd_clf"] = frechet_distance(feats[preserve], base_feats[preserve])
    else:
        metrics["fd_clf"] = math.nan
    metrics["clip_score"] = math.nan
    if clip_model is not None and edited_out.images_for_clip:
        from .metrics import clip_score

        prompts = [x.prompt for x in items if x.group == "preserve"]
        metrics["clip_score"] = clip_score(torch.stack(edited_out.images_for_clip), prompts, clip_model)
        if base is not None:
            base_metrics["clip_score"] = clip_score(torch.stack(base_out.images_for_clip), prompts, clip_model)
        else:
            base_metrics["clip_score"] = metrics["clip_score"]
    metrics.update({f"base_{k}": v for k, v in base_metrics.items()})
    metrics = {k: metrics[k] for k in HEADLINE_METRICS if k in metrics} | {
        k: v for k, v in metrics.items() if k not in HEADLINE_METRICS
    }
    kept = [edited_out._kept[s] for s in sorted(edited_out._kept)]
    base_kept = [base_out._kept[s] for s in sorted(base_out._kept)]
    images = {"base": torch.stack(base_kept), "edited": torch.stack(kept)} if kept else {}
    return ToySuiteResult(
        concept=cfg.concept,
        head=concept_head(cfg.concept),
        metrics={k: float(v) for k, v in metrics.items()},
        n_images={g: groups.count(g) for g in GROUPS},
        images=images,
        prompts=items,
        image_prompts=[items[i].prompt for i in keep],
        config=asdict(cfg) | {"has_base": base is not None, "world_version": 2},
    )
