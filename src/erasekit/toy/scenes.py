"""Toy world v2: scenes of one to three objects on a 2×2 grid, in one of four global styles.

A scene is 64×64 pixels: four 32×32 cells, each empty or holding one object drawn like the v1 world's single
objects (a shape, a colour, a pattern). The whole scene has a style: the default (a light background), ``cartoon``
(black outlines), ``night`` (a dark background) or ``grid`` (graph paper). Captions name every object, in random
order, but may leave out some of its attributes, which are then drawn at random; non-default styles are named.
Bare captions ("a star", "something striped", "at night") are part of training, so a concept named alone is in
distribution, as it is for a real model.

Why scenes: with one object per image everything a caption says fits in the text encoder's summary slots, and a
denoiser trained on such data reads those slots instead of the words (the splice test of the toy-world issue).
Several objects need attribute binding and token-selective cross-attention, as real captions do.

Everything is deterministic given the seeds of a ``random.Random`` (scene and caption choices) and a
``torch.Generator`` (the renderer's continuous draws).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F

from ..errors import UnknownConceptError
from .world import (
    _RGB,
    _STEMS,
    COLOUR_WORDS,
    COLOURS,
    PATTERN_ADJECTIVES,
    PATTERN_PHRASES,
    PATTERNS,
    SHAPE_WORDS,
    SHAPES,
    _shape_masks,
)

WORLD_VERSION = 2
SCENE_SIZE = 64
GRID = 2
CELL = SCENE_SIZE // GRID
CELLS = GRID * GRID
MAX_OBJECTS = 3

STYLES = ("default", "cartoon", "night", "grid")
OBJECT_HEADS = {"shape": SHAPES, "colour": COLOURS, "pattern": PATTERNS}
HEADS = {**OBJECT_HEADS, "style": STYLES}

# How a style is named: (where, phrase). The first is canonical; the others are synonyms. "prefix" phrases open
# the caption ("a cartoon of a red star"), "suffix" phrases close it ("a red star at night").
STYLE_PHRASES = {
    "cartoon": (("prefix", "a cartoon of"), ("suffix", "with black outlines"), ("suffix", "in line art")),
    "night": (("suffix", "at night"), ("suffix", "on a dark background"), ("suffix", "on black")),
    "grid": (("suffix", "on grid paper"), ("suffix", "on graph paper"), ("suffix", "on squared paper")),
}
# Captions of a style alone (objects unnamed, drawn at random).
BARE_STYLE = {
    "cartoon": ("a cartoon", "cartoon style", "something in line art"),
    "night": ("at night", "a scene at night", "something on a dark background"),
    "grid": ("grid paper", "a drawing on grid paper", "something on graph paper"),
}
STYLE_STEMS = {"cartoon": "cartoon", "night": "night", "grid": "grid"}

# Erasing one member of a pair must not erase the other: the suite measures accuracy on the neighbour.
NEIGHBOURS = {
    "red": "orange",
    "orange": "red",
    "yellow": "green",
    "green": "yellow",
    "blue": "purple",
    "purple": "blue",
    "star": "triangle",
    "triangle": "star",
    "circle": "heart",
    "heart": "circle",
    "square": "circle",
    "striped": "dotted",
    "dotted": "striped",
    "plain": "dotted",
    "cartoon": "grid",
    "grid": "cartoon",
    "night": "grid",
}

# Object phrases. {c} colour adjective, {p} pattern adjective, {s} shape noun, {w} pattern phrase; an omitted
# attribute's slot is left empty (and an omitted shape reads "shape" or "thing").
TRAIN_OBJECT_TEMPLATES = ("{a} {c} {p} {s}", "{a} {p} {c} {s}", "{a} {c} {s} {w}", "{a} {p} {s} in {c}")
HELDOUT_OBJECT_TEMPLATES = ("{a} {p} {s} coloured {c}", "one {c} {s} {w}")
TRAIN_JOINS = (("{} and {}", "{}, {} and {}"), ("{} next to {}", "{}, {} and {}"), ("{} beside {}", "{}, {}, {}"))
HELDOUT_JOINS = (("{} together with {}", "{} together with {} and {}"),)
TRAIN_PREFIXES = ("", "", "an image of ", "a photo of ")
HELDOUT_PREFIXES = ("a picture showing ", "there is ")
SHAPELESS_NOUNS = ("shape", "thing")


@dataclass(frozen=True)
class SceneObject:
    cell: int  # 0 top left, 1 top right, 2 bottom left, 3 bottom right
    shape: int
    colour: int
    pattern: int

    @property
    def names(self) -> dict[str, str]:
        return {"shape": SHAPES[self.shape], "colour": COLOURS[self.colour], "pattern": PATTERNS[self.pattern]}


@dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]
    style: int = 0

    @property
    def style_name(self) -> str:
        return STYLES[self.style]

    def has(self, concept: str) -> bool:
        """Whether the scene shows ``concept`` (in any object, or as its style)."""
        head = concept_head(concept)
        if head == "style":
            return self.style_name == concept
        return any(o.names[head] == concept for o in self.objects)


@dataclass(frozen=True)
class Description:
    """What a caption says of a scene: per object, which attributes it names; whether it names the style."""

    scene: Scene
    named: tuple[frozenset[str], ...]  # per object, the heads named ("shape", "colour", "pattern")
    style_named: bool = True
    objects_named: bool = True  # False for a bare style caption ("at night")


def concept_head(concept: str) -> str:
    """Which judge head a concept belongs to; raises a clear error for words the world lacks."""
    for head, values in HEADS.items():
        if concept in values and concept != "default":
            return head
    known = ", ".join(SHAPES + COLOURS + PATTERNS + STYLES[1:])
    raise UnknownConceptError(f"'{concept}' is not a concept of the toy world; known concepts: {known}")


# ---------------------------------------------------------------------------------------------- sampling


def random_scene(
    rng: random.Random,
    n_objects: int | None = None,
    style: str | None = None,
    fixed: dict[str, str] | None = None,
    exclude: tuple[str, ...] = (),
) -> Scene:
    """A scene with ``n_objects`` (default: 1 with p 0.4, 2 with 0.45, 3 with 0.15) in distinct cells.

    ``fixed`` pins attributes of the first object (e.g. ``{"shape": "star"}``); no object shows a concept in
    ``exclude`` (an excluded style picks another style).
    """
    if n_objects is None:
        n_objects = rng.choices((1, 2, 3), weights=(0.4, 0.45, 0.15))[0]
    fixed = fixed or {}
    cells = rng.sample(range(CELLS), n_objects)
    objects = []
    for i, cell in enumerate(cells):
        idx = {}
        for head, values in OBJECT_HEADS.items():
            if i == 0 and head in fixed:
                idx[head] = values.index(fixed[head])
            else:
                idx[head] = rng.choice([k for k, v in enumerate(values) if v not in exclude])
        objects.append(SceneObject(cell, idx["shape"], idx["colour"], idx["pattern"]))
    if style is None:
        choices = [s for s in STYLES if s not in exclude]
        weights = [0.55 if s == "default" else 0.15 for s in choices]
        style = rng.choices(choices, weights=weights)[0]
    return Scene(tuple(objects), STYLES.index(style))


def describe(scene: Scene, rng: random.Random | None = None, omit_p: float = 0.0) -> Description:
    """Which attributes a caption of ``scene`` names: each omitted with probability ``omit_p`` (never all three
    of an object, unless the caption is bare)."""
    named = []
    for _ in scene.objects:
        heads = {h for h in OBJECT_HEADS if rng is None or rng.random() >= omit_p}
        named.append(frozenset(heads or {rng.choice(list(OBJECT_HEADS))}))
    return Description(scene, tuple(named), style_named=True)


def _article(words: list[str]) -> list[str]:
    for i, word in enumerate(words):
        if word == "<a>":  # the article agrees with the word that follows it
            words[i] = "an" if i + 1 < len(words) and words[i + 1][:1] in "aeiou" else "a"
    return words


def _choose(options, concept: str, rng: random.Random, canonical: bool, avoid: tuple[str, ...]):
    options = list(options)
    if concept in avoid:
        stem = _STEMS.get(concept, STYLE_STEMS.get(concept, concept))
        options = [o for o in options if o and stem not in (o[1] if isinstance(o, tuple) else o)]
    return options[0] if canonical else rng.choice(options)


def object_phrase(
    obj: SceneObject,
    named: frozenset[str],
    rng: random.Random,
    templates=TRAIN_OBJECT_TEMPLATES,
    canonical: bool = False,
    avoid: tuple[str, ...] = (),
) -> str:
    """One object's phrase ("a red striped star", "something dotted")."""
    names = obj.names
    if named == {"colour"} or named == {"pattern"}:
        # A lone adjective reads "something striped" (the bare-concept form) or "a striped shape".
        head = next(iter(named))
        table = COLOUR_WORDS if head == "colour" else PATTERN_ADJECTIVES
        word = _choose([w for w in table[names[head]] if w], names[head], rng, canonical, avoid)
        if canonical or rng.random() < 0.5:
            return f"something {word}"
    template = templates[0] if canonical else rng.choice(templates)
    pattern = names["pattern"]
    p = w = c = s = ""
    if "pattern" in named:
        # v1's empty synonym of "plain" is left out: here a caption without a pattern word leaves it open.
        if "{w}" in template:
            w = _choose([x for x in PATTERN_PHRASES[pattern] if x], pattern, rng, canonical, avoid)
        else:
            p = _choose([x for x in PATTERN_ADJECTIVES[pattern] if x], pattern, rng, canonical, avoid)
    if "colour" in named:
        c = _choose(COLOUR_WORDS[names["colour"]], names["colour"], rng, canonical, avoid)
    elif " in {c}" in template or "coloured {c}" in template:
        template = template.replace(" in {c}", "").replace(" coloured {c}", "")
    if "shape" in named:
        s = _choose(SHAPE_WORDS[names["shape"]], names["shape"], rng, canonical, avoid)
    else:
        s = SHAPELESS_NOUNS[0] if canonical else rng.choice(SHAPELESS_NOUNS)
    text = template.format(a="<a>", c=c, p=p, s=s, w=w)
    return " ".join(_article(text.split()))


def caption(
    desc: Description | Scene,
    rng: random.Random,
    heldout: bool = False,
    canonical: bool = False,
    avoid: tuple[str, ...] = (),
) -> str:
    """A caption of a scene (or of a ``Description`` of one): object phrases in random order, joined, with the
    style's phrase. ``canonical`` takes the first word of every synonym list, the first template and the scene's
    object order; concepts in ``avoid`` are named only through synonyms that share no stem with the concept word
    (the synonym-erasure prompts). ``heldout`` uses templates that training never sees."""
    if isinstance(desc, Scene):
        desc = describe(desc)
    scene = desc.scene
    style = scene.style_name
    if not desc.objects_named:
        return _choose(BARE_STYLE[style], style, rng, canonical, avoid)
    templates = HELDOUT_OBJECT_TEMPLATES if heldout else TRAIN_OBJECT_TEMPLATES
    phrases = [object_phrase(o, n, rng, templates, canonical, avoid) for o, n in zip(scene.objects, desc.named)]
    if not canonical:
        rng.shuffle(phrases)
    pool = HELDOUT_JOINS if heldout else TRAIN_JOINS
    joins = pool[0 if canonical else rng.randrange(len(pool))]
    if len(phrases) == 1:
        body = phrases[0]
    else:
        body = joins[len(phrases) - 2].format(*phrases)
    prefixes = HELDOUT_PREFIXES if heldout else TRAIN_PREFIXES
    prefix = prefixes[0] if canonical else rng.choice(prefixes)
    if style != "default" and desc.style_named:
        where, phrase = _choose(STYLE_PHRASES[style], style, rng, canonical, avoid)
        if where == "prefix":
            return f"{phrase} {body}"
        return f"{prefix}{body} {phrase}"
    return f"{prefix}{body}"


def bare_caption(concept: str, rng: random.Random, canonical: bool = False) -> tuple[str, Scene]:
    """A caption naming one concept alone ("a star", "something striped", "at night"), and a scene it fits:
    one object with the concept (the rest random, default style), or random objects in the concept's style."""
    head = concept_head(concept)
    if head == "style":
        scene = random_scene(rng, style=concept)
        return caption(Description(scene, (), objects_named=False), rng, canonical=canonical), scene
    scene = random_scene(rng, n_objects=1, style="default", fixed={head: concept})
    text = caption(Description(scene, (frozenset({head}),)), rng, canonical=canonical)
    return text, scene


def training_pair(rng: random.Random, omit_p: float = 0.25, bare_p: float = 0.1) -> tuple[str, Scene]:
    """One (caption, scene) pair of the training distribution: a scene described with omissions, or (share
    ``bare_p``) a bare concept caption."""
    if rng.random() < bare_p:
        concepts = [*SHAPES, *COLOURS, "striped", "dotted", *STYLES[1:]]
        return bare_caption(rng.choice(concepts), rng)
    scene = random_scene(rng)
    desc = describe(scene, rng, omit_p)
    return caption(Description(scene, desc.named, style_named=True), rng), scene


def caption_for(scene: Scene, rng: random.Random, omit_p: float = 0.25, bare_p: float = 0.1) -> str:
    """A fresh training caption of an already drawn scene. An omitted attribute means "any value", so every
    partial description of a scene is a true caption of it; a bare caption is used (share ``bare_p``) where it fits:
    the style of a styled scene, or one attribute of a lone object in the default style."""
    if rng.random() < bare_p:
        if scene.style_name != "default":
            return caption(Description(scene, (), objects_named=False), rng)
        if len(scene.objects) == 1:
            head = rng.choice(list(OBJECT_HEADS))
            if not (head == "pattern" and scene.objects[0].pattern == 0):  # "something plain" names nothing
                return caption(Description(scene, (frozenset({head}),)), rng)
    return caption(describe(scene, rng, omit_p), rng)


# ------------------------------------------------------------------------------------------------ parsing


@dataclass(frozen=True)
class ParsedCaption:
    """What a caption says: per object, each head's value or ``None`` where it is not said; the style (``None``
    when the caption names none, i.e. the default); ``objects_named`` false for a bare style caption."""

    objects: tuple[dict[str, str | None], ...]
    style: str | None
    objects_named: bool = True


def _phrase_table() -> list[tuple[str, str, str]]:
    """(phrase, head, value) for every attribute phrase of the grammar, longest first."""
    rows = []
    for value, words in SHAPE_WORDS.items():
        rows += [(w, "shape", value) for w in words]
    for value, words in COLOUR_WORDS.items():
        rows += [(w, "colour", value) for w in words]
    for table in (PATTERN_ADJECTIVES, PATTERN_PHRASES):
        for value, words in table.items():
            rows += [(w, "pattern", value) for w in words if w]
    return sorted(rows, key=lambda r: -len(r[0]))


_FILLER = {"a", "an", "one", "something", "shape", "thing", "in", "coloured", "the", "colour"}
_SEPARATORS = (" together with ", " next to ", " beside ", " and ", ", ")


def parse_caption(text: str) -> ParsedCaption:
    """Read a caption of the toy world's grammar back into what it names.

    Raises:
        UnknownConceptError: the caption has words the toy world's grammar does not know, names more objects
            than the scene has cells, or names one object twice over (two shapes in one phrase).
    """
    rest = " " + " ".join(text.lower().replace(",", " , ").split()).replace(" ,", ",") + " "
    style = None
    style_rows = [(p, s) for s, phrases in STYLE_PHRASES.items() for _, p in phrases]
    style_rows += [(p, s) for s, phrases in BARE_STYLE.items() for p in phrases]
    for phrase, name in sorted(style_rows, key=lambda r: -len(r[0])):
        if f" {phrase} " in rest:
            style = name
            rest = rest.replace(f" {phrase} ", " ", 1)
            break
    rest = rest.strip()
    for prefix in sorted(set(TRAIN_PREFIXES + HELDOUT_PREFIXES) - {""}, key=len, reverse=True):
        if rest.startswith(prefix):
            rest = rest[len(prefix) :]
            break
    if not rest or rest in ("something", "a scene", "a drawing"):
        if style is None:
            raise UnknownConceptError(f"the toy world's judge cannot place {text!r}: it names nothing")
        return ParsedCaption((), style, objects_named=False)
    phrases = [rest]
    for sep in _SEPARATORS:
        phrases = [part for p in phrases for part in p.split(sep)]
    phrases = [p.strip() for p in phrases if p.strip()]
    if len(phrases) > CELLS:
        raise UnknownConceptError(f"the toy world's judge cannot place {text!r}: {len(phrases)} objects, {CELLS} cells")
    objects = []
    for phrase in phrases:
        found: dict[str, str | None] = dict.fromkeys(OBJECT_HEADS)
        left = f" {phrase} "
        for words, head, value in _phrase_table():
            if f" {words} " in left:
                if found[head] not in (None, value):
                    raise UnknownConceptError(f"the toy world's judge cannot place {text!r}: {phrase!r} is two objects")
                found[head] = value
                left = left.replace(f" {words} ", " ")
        unknown = [w for w in left.split() if w not in _FILLER]
        if unknown:
            raise UnknownConceptError(
                f"the toy world's judge cannot place {text!r}: unknown words {', '.join(map(repr, unknown))}"
            )
        objects.append(found)
    return ParsedCaption(tuple(objects), style)


def caption_words(text: str) -> list[str]:
    """A caption's words as the toy tokenizers split them (one token each; a comma is a word of its own)."""
    return text.lower().replace(",", " , ").split()


@lru_cache
def _phrase_words() -> tuple[tuple[list[str], str, str], ...]:
    """``_phrase_table`` split into words, most words first (built once: training places every caption)."""
    return tuple(sorted(((w.split(), h, v) for w, h, v in _phrase_table()), key=lambda r: -len(r[0])))


def phrase_attributes(text: str) -> list[tuple[dict[str, str], tuple[int, ...], tuple[tuple[int, ...], ...]]]:
    """For each object phrase of a caption, in caption order: (the values it names per head, the positions in
    ``caption_words(text)`` of its attribute words, those positions per attribute phrase: "round shape" is one).
    Segments naming no attribute (a style phrase) are left out."""
    words = caption_words(text)
    separators = [s.split() for s in _SEPARATORS]
    segments, start, i = [], 0, 0
    while i < len(words):
        sep = next((s for s in separators if words[i : i + len(s)] == s), None)
        if sep is None:
            i += 1
            continue
        segments.append((start, i))
        i += len(sep)
        start = i
    segments.append((start, len(words)))
    table = _phrase_words()
    phrases = []
    for a, b in segments:
        found: dict[str, str] = {}
        used: set[int] = set()
        spans = []
        for phrase, head, value in table:
            for j in range(a, b - len(phrase) + 1):
                span = set(range(j, j + len(phrase)))
                if words[j : j + len(phrase)] == phrase and not used & span:
                    found[head] = value
                    used |= span
                    spans.append(tuple(range(j, j + len(phrase))))
        if used:
            phrases.append((found, tuple(sorted(used)), tuple(sorted(spans))))
    return phrases


def object_word_positions(text: str, scene: Scene) -> list[tuple[int, tuple[int, ...]]]:
    """For each object phrase of a caption of ``scene``: (the object's index in ``scene.objects``, the positions in
    ``caption_words(text)`` of the phrase's attribute words). A phrase that fits several of the objects not yet
    placed ("a red thing" beside two red objects) is left out; every other phrase lands on its own object, since a
    caption's phrases are true descriptions and the first phrase placed fits only its own."""
    placed: list[tuple[int, tuple[int, ...]]] = []
    taken: set[int] = set()
    for found, used, _ in phrase_attributes(text):
        fits = [
            k
            for k, obj in enumerate(scene.objects)
            if k not in taken and all(obj.names[h] == v for h, v in found.items())
        ]
        if len(fits) == 1:
            taken.add(fits[0])
            placed.append((fits[0], used))
    return placed


# --------------------------------------------------------------------------------------------- rendering


def _render_objects(objects: list[SceneObject], g: torch.Generator, outline: torch.Tensor, supersample: int, dev):
    """Each object in its own cell-sized canvas: colour (N, 3, CELL, CELL), coverage and outline alpha
    (N, 1, CELL, CELL). ``outline`` (N,) bool marks the objects drawn with a black outline (cartoon style)."""
    b = len(objects)

    def rand(*shape):
        return torch.rand(*shape, generator=g).to(dev)

    shape = torch.tensor([o.shape for o in objects], device=dev)
    colour = torch.tensor([o.colour for o in objects], device=dev)
    pattern = torch.tensor([o.pattern for o in objects], device=dev)
    n = CELL * supersample
    coords = (torch.arange(n, device=dev, dtype=torch.float32) + 0.5) / supersample
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    xx, yy = xx.expand(b, n, n), yy.expand(b, n, n)

    radius = (0.30 + 0.10 * rand(b)) * CELL
    cx = CELL / 2 + (rand(b) - 0.5) * (CELL - 2.2 * radius) * 0.9
    cy = CELL / 2 + (rand(b) - 0.5) * (CELL - 2.2 * radius) * 0.9
    angle = (rand(b) - 0.5) * math.radians(30)
    dx = (xx - cx.view(-1, 1, 1)) / radius.view(-1, 1, 1)
    dy = -(yy - cy.view(-1, 1, 1)) / radius.view(-1, 1, 1)
    ca, sa = torch.cos(angle).view(-1, 1, 1), torch.sin(angle).view(-1, 1, 1)
    u, v = ca * dx + sa * dy, -sa * dx + ca * dy
    inside = _shape_masks(shape, u, v)

    # Patterns are coarser than v1's: the v2 autoencoder downsamples 4× (v1: 2×), and a stripe period under two
    # latent pixels would not survive it.
    period = 7.0 + 1.4 * rand(b)
    stripe_angle = torch.randint(0, 4, (b,), generator=g).to(dev) * (math.pi / 4) + (rand(b) - 0.5) * 0.3
    phase = rand(b) * 2 * math.pi
    proj = xx * torch.cos(stripe_angle).view(-1, 1, 1) + yy * torch.sin(stripe_angle).view(-1, 1, 1)
    stripes = torch.sin(2 * math.pi * proj / period.view(-1, 1, 1) + phase.view(-1, 1, 1)) > 0
    dot_period = (7.0 + 1.2 * rand(b)).view(-1, 1, 1)
    ox, oy = rand(b).view(-1, 1, 1) * dot_period, rand(b).view(-1, 1, 1) * dot_period
    gx = (xx + ox) % dot_period - dot_period / 2
    gy = (yy + oy) % dot_period - dot_period / 2
    dots = gx * gx + gy * gy <= (0.27 * dot_period) ** 2
    light = ((pattern == 1).view(-1, 1, 1) & stripes) | ((pattern == 2).view(-1, 1, 1) & dots)

    base = torch.tensor([_RGB[c] for c in COLOURS], device=dev)[colour]
    base = (base + (rand(b, 3) - 0.5) * 0.08).clamp(0, 1)
    highlight = base * 0.4 + 0.6
    fg = torch.where(light.unsqueeze(1), highlight.view(b, 3, 1, 1), base.view(b, 3, 1, 1))
    alpha = inside.unsqueeze(1).float()
    # A black outline about 1.5 px wide around the shape: a dilation of its mask, outside the mask.
    k = int(1.5 * supersample) * 2 + 1
    ring = (F.max_pool2d(alpha, k, stride=1, padding=k // 2) - alpha).clamp(0, 1) * outline.view(-1, 1, 1, 1)
    return (
        F.avg_pool2d(fg * alpha, supersample) / F.avg_pool2d(alpha, supersample).clamp_min(1e-6),
        F.avg_pool2d(alpha, supersample),
        F.avg_pool2d(ring, supersample),
    )


def _backgrounds(styles: torch.Tensor, g: torch.Generator, dev) -> torch.Tensor:
    b = styles.shape[0]
    rand = lambda *s: torch.rand(*s, generator=g).to(dev)  # noqa: E731
    light = (0.93 + 0.07 * rand(b, 1)).expand(b, 3) + (rand(b, 3) - 0.5) * 0.04
    dark = torch.tensor([0.07, 0.08, 0.14], device=dev) + (rand(b, 1) - 0.5) * 0.06 + (rand(b, 3) - 0.5) * 0.03
    bg = torch.where((styles == STYLES.index("night")).view(-1, 1), dark, light).view(b, 3, 1, 1)
    bg = bg.expand(b, 3, SCENE_SIZE, SCENE_SIZE).clone()
    # Graph paper: light blue-grey lines every 8 px at a random offset, about 1 px wide.
    coords = torch.arange(SCENE_SIZE, device=dev, dtype=torch.float32)
    offset = rand(b, 2) * 8
    lx = (((coords.view(1, -1) + offset[:, :1]) % 8) < 1.2).float()  # (B, W)
    ly = (((coords.view(1, -1) + offset[:, 1:]) % 8) < 1.2).float()  # (B, H)
    lines = torch.maximum(lx.view(b, 1, 1, -1), ly.view(b, 1, -1, 1))
    ink = torch.tensor([0.55, 0.68, 0.85], device=dev).view(1, 3, 1, 1)
    is_grid = (styles == STYLES.index("grid")).view(-1, 1, 1, 1).float()
    return bg * (1 - lines * is_grid) + ink * lines * is_grid


def render_scenes(
    scenes: list[Scene], generator: torch.Generator | None = None, supersample: int = 4, device="cpu"
) -> torch.Tensor:
    """Render ``scenes`` to a batch (B, 3, 64, 64) in [0, 1]."""
    dev = torch.device(device)
    b = len(scenes)
    if b == 0:
        return torch.zeros(0, 3, SCENE_SIZE, SCENE_SIZE, device=dev)
    styles = torch.tensor([s.style for s in scenes], device=dev)
    images = _backgrounds(styles, generator, dev)
    flat = [(i, o) for i, s in enumerate(scenes) for o in s.objects]
    if flat:
        cartoon = torch.tensor([scenes[i].style == STYLES.index("cartoon") for i, _ in flat], device=dev)
        fg, alpha, ring = _render_objects([o for _, o in flat], generator, cartoon, supersample, dev)
        for k, (i, obj) in enumerate(flat):
            y, x = (obj.cell // GRID) * CELL, (obj.cell % GRID) * CELL
            cell = images[i, :, y : y + CELL, x : x + CELL]
            cell = alpha[k] * fg[k] + (1 - alpha[k]) * cell
            images[i, :, y : y + CELL, x : x + CELL] = cell * (1 - ring[k])
    noise = (torch.rand(images.shape, generator=generator).to(dev) - 0.5) * 0.02
    return (images + noise).clamp(0, 1)


def scene_labels(scenes: list[Scene], device="cpu") -> dict[str, torch.Tensor]:
    """Judge targets: ``presence`` (B, 4) 0/1 per cell; ``shape``/``colour``/``pattern`` (B, 4), −1 where a cell
    is empty; ``style`` (B,)."""
    b = len(scenes)
    out = {"presence": torch.zeros(b, CELLS, dtype=torch.long)}
    for head in OBJECT_HEADS:
        out[head] = torch.full((b, CELLS), -1, dtype=torch.long)
    for i, scene in enumerate(scenes):
        for obj in scene.objects:
            out["presence"][i, obj.cell] = 1
            out["shape"][i, obj.cell] = obj.shape
            out["colour"][i, obj.cell] = obj.colour
            out["pattern"][i, obj.cell] = obj.pattern
    out["style"] = torch.tensor([s.style for s in scenes], dtype=torch.long)
    return {k: v.to(device) for k, v in out.items()}


class SceneStream:
    """A seeded stream of training batches: rendered scenes, their captions and judge labels."""

    def __init__(self, seed: int, device="cpu", omit_p: float = 0.25, bare_p: float = 0.1, supersample: int = 4):
        self.supersample = supersample  # anti-aliasing; 2 renders 3× faster (enough for a contrastive model)
        self.rng = random.Random(seed)
        self.gen = torch.Generator().manual_seed(seed)
        self.device = torch.device(device)
        self.omit_p, self.bare_p = omit_p, bare_p

    def batch(self, n: int, dropout: float = 0.0):
        pairs = [training_pair(self.rng, self.omit_p, self.bare_p) for _ in range(n)]
        scenes = [s for _, s in pairs]
        captions = ["" if self.rng.random() < dropout else c for c, _ in pairs]
        images = render_scenes(scenes, self.gen, self.supersample, device=self.device)
        return images, captions, scene_labels(scenes, self.device)


def vocabulary() -> list[str]:
    """Every word any v2 caption can contain, in a stable order."""
    texts: list[str] = []
    for group in (SHAPE_WORDS, COLOUR_WORDS, PATTERN_ADJECTIVES, PATTERN_PHRASES, BARE_STYLE):
        for options in group.values():
            texts.extend(options)
    for options in STYLE_PHRASES.values():
        texts.extend(p for _, p in options)
    texts += list(TRAIN_OBJECT_TEMPLATES + HELDOUT_OBJECT_TEMPLATES + TRAIN_PREFIXES + HELDOUT_PREFIXES)
    texts += [j for joins in TRAIN_JOINS + HELDOUT_JOINS for j in joins]
    texts += list(SHAPELESS_NOUNS) + ["a", "an", "something"]
    words: list[str] = []
    for text in texts:
        for slot in ("{a}", "{c}", "{p}", "{s}", "{w}", "{}"):
            text = text.replace(slot, " ")
        for token in text.replace(",", " , ").replace("-", " - ").split():
            if token not in words:
                words.append(token)
    return words
