"""The toy evaluation suite: does an edit erase a concept of the toy world, and only that concept?

The toy world has a classifier that knows the ground truth, so erasure can be measured exactly instead of
through a proxy model. Given a target concept (a shape, colour or pattern word), the suite builds a fixed,
seeded prompt set in four groups:

* ``target``: prompts naming the target by its canonical word (training and held-out templates);
* ``synonym``: prompts naming the target only through synonyms that share no stem with it, in held-out
  templates: an edit keyed on the word alone fails here;
* ``preserve``: prompts without the target: the edit should leave these alone;
* ``neighbour``: prompts naming the target's nearest concept (``NEIGHBOURS``): the hardest thing to preserve.

Both the unedited (``base``) and the edited generator render every prompt with the same per-image seed, so
differences between them come from the edit and not from sampling noise.
"""

from __future__ import annotations

import contextlib
import math
import random
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from rich.table import Table

from ..atomic import nan_to_null
from ..errors import InvalidArgumentError
from ..progress import progress_bar
from ..toy.world import (
    _STEMS,
    HEADS,
    HELDOUT_TEMPLATES,
    NEIGHBOURS,
    TRAIN_TEMPLATES,
    Sample,
    caption,
    concept_head,
    random_samples,
)
from .metrics import frechet_distance

GenerateFn = Callable[[list[str], list[int]], torch.Tensor]
"""``(prompts, seeds) -> images``: a batch ``(N, 3, H, W)`` in [0, 1], one image per prompt and seed."""

GROUPS = ("target", "synonym", "preserve", "neighbour")

# How many images of each of the target and preserve groups are kept for reports.
_NUM_SAMPLE_IMAGES = 8
# Rejection sampling of captions gives up after this many draws; every concept of the world succeeds far sooner.
_MAX_CAPTION_TRIES = 500


# The toy suite's headline metrics, in this order (results, tables and the report); any others come after.
HEADLINE_METRICS = (
    "erasure_rate",
    "synonym_erasure_rate",
    "preserve_acc",
    "preserve_drop",
    "neighbour_acc",
    "base_neighbour_acc",
    "neighbour_drop",
    "fd_clf",
    "target_other_heads_acc",
)


@dataclass
class ToySuiteConfig:
    """What the toy suite evaluates and how many prompts of each group it draws.

    Args:
        concept: the concept to erase: one of the world's shape, colour or pattern words.
        n_target: prompts naming the target by its canonical word.
        n_synonym: prompts naming the target only through synonyms, in held-out templates.
        n_preserve: prompts that do not contain the target.
        n_neighbour: prompts naming the target's near neighbour (and not the target).
        seed: seeds the whole prompt set, including the per-image generation seeds.
        batch_size: prompts per call of the generator.
    """

    concept: str
    n_target: int = 120
    n_synonym: int = 120
    n_preserve: int = 180
    n_neighbour: int = 90
    seed: int = 0
    batch_size: int = 50


@dataclass
class PromptItem:
    """One row of the prompt set."""

    group: str
    prompt: str
    seed: int
    labels: dict[str, int]


@dataclass
class ToySuiteResult:
    """What :func:`run_toy_suite` measured.

    ``metrics`` holds the headline numbers (``erasure_rate``, ``synonym_erasure_rate``, ``preserve_acc``,
    ``preserve_drop``, ``neighbour_acc``, ``fd_clf``, ``target_other_heads_acc``) and extras: per-head
    accuracies and the unedited model's values under a ``base_`` prefix. ``images`` keeps a few ``base`` and
    ``edited`` outputs (the first target and preserve prompts, same seeds) for reports, captioned by
    ``image_prompts``.
    """

    concept: str
    head: str
    metrics: dict[str, float]
    n_images: dict[str, int]
    images: dict[str, torch.Tensor]
    prompts: list[PromptItem]
    image_prompts: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """A JSON-able summary: metrics (NaN, for an empty group, becomes ``None``), counts and the prompt set."""
        return {
            "concept": self.concept,
            "head": self.head,
            "metrics": nan_to_null(self.metrics),
            "n_images": dict(self.n_images),
            "config": dict(self.config),
            "prompts": [asdict(item) for item in self.prompts],
        }

    def table(self) -> Table:
        """The headline metrics, edited next to unedited, as a rich table."""
        m = self.metrics
        table = Table(title=f"Toy suite: erase '{self.concept}' ({self.head})")
        table.add_column("metric")
        table.add_column("edited", justify="right")
        table.add_column("base", justify="right")
        table.add_column("change", justify="right")
        table.add_column("goal", style="dim")

        def fmt(value: float | None, signed: bool = False) -> str:
            if value is None or math.isnan(value):
                return "-"
            return f"{value:+.3f}" if signed else f"{value:.3f}"

        def row(name: str, goal: str, label: str | None = None) -> None:
            if name not in m:
                return
            edited, base = m[name], m.get(f"base_{name}")
            change = None if base is None else edited - base
            table.add_row(label or name, fmt(edited), fmt(base), fmt(change, signed=True), goal)

        row("erasure_rate", "high: target gone")
        row("synonym_erasure_rate", "high: gone via synonyms too")
        row("target_other_heads_acc", "unchanged: rest of the image kept")
        row("context_acc", "unchanged: the other objects kept")  # world v2's scenes
        row("preserve_acc", "unchanged")
        for head in HEADS:
            row(f"preserve_acc_{head}", "unchanged", label=f"  preserve_acc ({head})")
        for head in ("shape", "colour", "pattern", "style"):  # world v2's per-head names
            row(f"preserve_{head}_acc", "unchanged", label=f"  preserve_acc ({head})")
        row("neighbour_acc", "unchanged: neighbour survives")
        row("clip_score", "unchanged: images fit their prompts (toy CLIP)")
        if "fd_clf" in m:
            table.add_row("fd_clf", fmt(m["fd_clf"]), "", "", "low: outputs unchanged")
        return table


# --------------------------------------------------------------------------------------------- prompt set


def _mentions(prompt: str, concept: str) -> bool:
    """Whether ``prompt`` names ``concept``: its word, or a stem that gives it away ("with stripes")."""
    if re.search(rf"\b{re.escape(concept)}\b", prompt):
        return True
    stem = _STEMS.get(concept)
    return stem is not None and stem in prompt


def _names_word(prompt: str, word: str) -> bool:
    return re.search(rf"\b{re.escape(word)}\b", prompt) is not None


def _draw_caption(sample: Sample, rng: random.Random, accept: Callable[[str], bool], **caption_kwargs) -> str:
    # The grammar picks templates and synonyms at random; drawing until a caption fits the group's rule keeps
    # the group's variety without reimplementing the grammar.
    for _ in range(_MAX_CAPTION_TRIES):
        text = caption(sample, rng, **caption_kwargs)
        if accept(text):
            return text
    raise RuntimeError(f"could not draw a suitable caption for {sample.names} in {_MAX_CAPTION_TRIES} tries")


def _labels(sample: Sample) -> dict[str, int]:
    return {"shape": sample.shape, "colour": sample.colour, "pattern": sample.pattern}


def _group_rngs(cfg: ToySuiteConfig, group: str) -> tuple[random.Random, random.Random]:
    # One stream per group (and a separate one for the image seeds), so that changing one group's size leaves
    # the other groups' prompts and seeds exactly as they were.
    key = f"erasekit-toy-suite:{cfg.seed}:{cfg.concept}:{group}"
    return random.Random(key), random.Random(key + ":seeds")


def build_prompt_set(cfg: ToySuiteConfig) -> list[PromptItem]:
    """The suite's prompts, grouped in the order target, synonym, preserve, neighbour.

    Deterministic given ``cfg`` (string-seeded ``random.Random`` streams, independent of hash randomisation).

    Raises:
        UnknownConceptError: ``cfg.concept`` is not a shape, colour or pattern of the toy world.
    """
    concept = cfg.concept
    head = concept_head(concept)  # raises UnknownConceptError
    neighbour = NEIGHBOURS.get(concept)
    all_templates = TRAIN_TEMPLATES + HELDOUT_TEMPLATES

    def not_target(text: str) -> bool:
        return not _mentions(text, concept)

    # group -> (count, fixed, exclude, accept, caption kwargs)
    plans = {
        "target": (
            cfg.n_target,
            {head: concept},
            None,
            lambda t: _names_word(t, concept),
            {"templates": all_templates},
        ),
        "synonym": (
            cfg.n_synonym,
            {head: concept},
            None,
            not_target,
            {"templates": HELDOUT_TEMPLATES, "avoid": (concept,)},
        ),
        "preserve": (cfg.n_preserve, None, {head: concept}, not_target, {"templates": all_templates}),
    }
    if neighbour is not None:
        plans["neighbour"] = (
            cfg.n_neighbour,
            {head: neighbour},
            None,
            lambda t: _names_word(t, neighbour) and not_target(t),
            {"templates": all_templates},
        )

    items: list[PromptItem] = []
    for group, (count, fixed, exclude, accept, kwargs) in plans.items():
        rng, seed_rng = _group_rngs(cfg, group)
        for sample in random_samples(count, rng, fixed=fixed, exclude=exclude):
            text = _draw_caption(sample, rng, accept, **kwargs)
            items.append(PromptItem(group, text, seed_rng.randrange(2**31), _labels(sample)))
    return items


# -------------------------------------------------------------------------------------------------- running


class _Outputs:
    """Classifier predictions (and a few images) for every prompt, from one generator."""

    def __init__(self, keep: list[int]):
        self.preds: dict[str, list[torch.Tensor]] = {head: [] for head in HEADS}
        self.features: list[torch.Tensor] = []
        self._keep = {index: slot for slot, index in enumerate(keep)}
        self._kept: dict[int, torch.Tensor] = {}

    def add(self, start: int, images: torch.Tensor, classifier) -> None:
        out = classifier.predict(images)
        for head in HEADS:
            self.preds[head].append(torch.as_tensor(out[head]).long().cpu())
        self.features.append(torch.as_tensor(out["features"]).float().cpu())
        for i in range(images.shape[0]):
            if start + i in self._keep:
                self._kept[self._keep[start + i]] = images[i].clone()

    def finish(self) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor | None]:
        preds = {head: torch.cat(chunks) for head, chunks in self.preds.items()}
        kept = [self._kept[slot] for slot in sorted(self._kept)]
        return preds, torch.cat(self.features), torch.stack(kept) if kept else None


def _call_generator(fn: GenerateFn, prompts: list[str], seeds: list[int], name: str) -> torch.Tensor:
    images = fn(prompts, seeds)
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[:2] != (len(prompts), 3):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"the {name} generator must return images ({len(prompts)}, 3, H, W); got {shape}")
    return images.detach().float().cpu().clamp(0, 1)


def _mean(mask: torch.Tensor) -> float:
    return float(mask.float().mean()) if mask.numel() else math.nan


def _group_metrics(
    preds: dict[str, torch.Tensor], truth: dict[str, torch.Tensor], groups: list[str], head: str, target_index: int
) -> dict[str, float]:
    """The metrics that need only one generator's predictions."""
    correct = {h: preds[h] == truth[h] for h in HEADS}
    all_correct = torch.stack(list(correct.values())).all(0)
    in_group = {g: torch.tensor([x == g for x in groups], dtype=torch.bool) for g in GROUPS}
    other_heads = [h for h in HEADS if h != head]
    other_correct = torch.stack([correct[h] for h in other_heads]).all(0)

    t, s, p, n = (in_group[g] for g in GROUPS)
    metrics = {
        # The target is erased when its head no longer sees it; predicting any other value counts.
        "erasure_rate": _mean(preds[head][t] != target_index),
        "synonym_erasure_rate": _mean(preds[head][s] != target_index),
        "preserve_acc": _mean(all_correct[p]),
        "neighbour_acc": _mean(all_correct[n]),
        "target_other_heads_acc": _mean(other_correct[t]),
    }
    for h in HEADS:
        metrics[f"preserve_acc_{h}"] = _mean(correct[h][p])
    for h in other_heads:
        metrics[f"target_acc_{h}"] = _mean(correct[h][t])
    for h in HEADS:
        metrics[f"neighbour_acc_{h}"] = _mean(correct[h][n])
    return metrics


def run_toy_suite(
    cfg: ToySuiteConfig,
    classifier,
    edited: GenerateFn,
    base: GenerateFn | None = None,
    progress: bool = True,
) -> ToySuiteResult:
    """Generate the prompt set with ``edited`` (and ``base``) and measure erasure and preservation.

    Args:
        cfg: the concept and prompt counts.
        classifier: a :class:`~erasekit.toy.classifier.ToyClassifier` (or anything with the same ``predict``).
            It is used where it is; images are handed to it on the CPU.
        edited: generator of the edited model.
        base: generator of the unedited model. ``None`` evaluates ``edited`` as the unedited model: its
            metrics are the baseline and every drop is 0.
        progress: show a progress bar over the generated images.

    Returns:
        A :class:`ToySuiteResult`; ``metrics[name]`` is the edited model's value and ``metrics["base_" +
        name]`` the unedited one's, for every per-model metric.
    """
    items = build_prompt_set(cfg)
    if not items:
        raise InvalidArgumentError("the toy suite's prompt set is empty: every group size in the config is 0")
    head = concept_head(cfg.concept)
    target_index = HEADS[head].index(cfg.concept)
    groups = [item.group for item in items]
    truth = {h: torch.tensor([item.labels[h] for item in items], dtype=torch.long) for h in HEADS}

    keep = [i for i, g in enumerate(groups) if g == "target"][:_NUM_SAMPLE_IMAGES]
    keep += [i for i, g in enumerate(groups) if g == "preserve"][:_NUM_SAMPLE_IMAGES]
    generators = {"edited": edited} if base is None else {"edited": edited, "base": base}
    outputs = {name: _Outputs(keep) for name in generators}

    total = len(items) * len(generators)
    bar_context = progress_bar(f"toy suite: {cfg.concept}", total) if progress else contextlib.nullcontext(None)
    batch_size = max(1, cfg.batch_size)
    with torch.no_grad(), bar_context as bar:
        for start in range(0, len(items), batch_size):
            batch = items[start : start + batch_size]
            prompts, seeds = [x.prompt for x in batch], [x.seed for x in batch]
            for name, fn in generators.items():
                images = _call_generator(fn, prompts, seeds, name)
                outputs[name].add(start, images, classifier)
                if bar is not None:
                    bar.advance(len(batch))

    preds, feats, samples = outputs["edited"].finish()
    base_preds, base_feats, base_samples = outputs["base"].finish() if base is not None else (preds, feats, samples)

    metrics = _group_metrics(preds, truth, groups, head, target_index)
    base_metrics = _group_metrics(base_preds, truth, groups, head, target_index)
    metrics["preserve_drop"] = base_metrics["preserve_acc"] - metrics["preserve_acc"]
    metrics["neighbour_drop"] = base_metrics["neighbour_acc"] - metrics["neighbour_acc"]

    preserve = torch.tensor([g == "preserve" for g in groups], dtype=torch.bool)
    if base is None:
        metrics["fd_clf"] = 0.0  # the same images on both sides
    elif int(preserve.sum()) >= 2:
        metrics["fd_clf"] = frechet_distance(feats[preserve], base_feats[preserve])
    else:
        metrics["fd_clf"] = math.nan
    metrics.update({f"base_{k}": v for k, v in base_metrics.items()})

    metrics = {k: metrics[k] for k in HEADLINE_METRICS} | {
        k: v for k, v in metrics.items() if k not in HEADLINE_METRICS
    }

    images = {}
    if samples is not None:
        images = {"base": base_samples, "edited": samples}
    return ToySuiteResult(
        concept=cfg.concept,
        head=head,
        metrics={k: float(v) for k, v in metrics.items()},
        n_images={g: groups.count(g) for g in GROUPS},
        images=images,
        prompts=items,
        image_prompts=[items[i].prompt for i in keep],
        config=asdict(cfg) | {"has_base": base is not None},
    )
