"""The toy world: procedurally rendered, captioned images of coloured, patterned shapes.

Everything here is deterministic given a seed. Images are rendered with torch (vectorised over the batch and
supersampled for anti-aliasing), so the world can feed a trainer on a CPU or a GPU without a dataset on disk.

Attributes are indices into ``SHAPES``, ``COLOURS`` and ``PATTERNS``. Captions come from a small grammar with
synonyms; ``TRAIN_TEMPLATES`` are used for training, ``HELDOUT_TEMPLATES`` only for evaluation.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch

from ..errors import UnknownConceptError

IMAGE_SIZE = 32

SHAPES = ("circle", "square", "triangle", "star", "heart")
COLOURS = ("red", "orange", "yellow", "green", "blue", "purple")
PATTERNS = ("plain", "striped", "dotted")
HEADS = {"shape": SHAPES, "colour": COLOURS, "pattern": PATTERNS}

# The first entry is the canonical word; the others are synonyms seen in training captions.
SHAPE_WORDS = {
    "circle": ("circle", "disc", "round shape"),
    "square": ("square", "box", "four-sided shape"),
    "triangle": ("triangle", "wedge", "three-sided shape"),
    "star": ("star", "pentagram", "five-pointed shape"),
    "heart": ("heart", "love symbol", "valentine shape"),
}
COLOUR_WORDS = {
    "red": ("red", "crimson", "scarlet"),
    "orange": ("orange", "tangerine", "amber"),
    "yellow": ("yellow", "golden", "lemon"),
    "green": ("green", "emerald", "grassy"),
    "blue": ("blue", "azure", "navy"),
    "purple": ("purple", "violet", "lilac"),
}
# Patterns read either as an adjective ("a striped star") or as a trailing phrase ("a star with stripes").
PATTERN_ADJECTIVES = {
    "plain": ("plain", "solid", ""),
    "striped": ("striped", "banded"),
    "dotted": ("dotted", "spotted"),
}
PATTERN_PHRASES = {
    "plain": ("", "in one flat colour"),
    "striped": ("with stripes", "with bands"),
    "dotted": ("with dots", "with spots"),
}

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
}

# {c} colour adjective, {p} pattern adjective, {s} shape noun, {w} pattern phrase.
TRAIN_TEMPLATES = (
    "{a} {c} {p} {s}",
    "{a} {p} {c} {s}",
    "{a} {c} {s} {w}",
    "{a} {s} in {c} {w}",
    "an image of {a} {c} {p} {s}",
    "{c} {p} {s}",
    "{a} {p} {s}, {c}",
    "a photo of {a} {c} {s} {w}",
)
HELDOUT_TEMPLATES = (
    "a picture showing {a} {c} {p} {s}",
    "there is {a} {p} {s} coloured {c}",
    "a drawing of one {c} {s} {w}",
    "{p} {s} in the colour {c}",
)

_RGB = {
    "red": (0.86, 0.10, 0.10),
    "orange": (1.00, 0.55, 0.05),
    "yellow": (0.95, 0.85, 0.10),
    "green": (0.10, 0.62, 0.20),
    "blue": (0.12, 0.28, 0.90),
    "purple": (0.55, 0.15, 0.72),
}


def concept_head(concept: str) -> str:
    """Which classifier head a concept word belongs to; raises a clear error for words the world lacks."""
    for head, values in HEADS.items():
        if concept in values:
            return head
    known = ", ".join(SHAPES + COLOURS + PATTERNS)
    raise UnknownConceptError(f"'{concept}' is not a concept of the toy world; known concepts: {known}")


@dataclass(frozen=True)
class Sample:
    shape: int
    colour: int
    pattern: int

    @property
    def names(self) -> dict[str, str]:
        return {"shape": SHAPES[self.shape], "colour": COLOURS[self.colour], "pattern": PATTERNS[self.pattern]}


def caption(
    sample: Sample,
    rng: random.Random,
    templates=TRAIN_TEMPLATES,
    canonical: bool = False,
    avoid: tuple[str, ...] = (),
) -> str:
    """A caption of ``sample`` from one of ``templates``.

    ``canonical`` takes the first word of every synonym list; concepts in ``avoid`` are named only through a
    synonym that shares no stem with the concept word (used by the synonym-erasure prompts).
    """
    names = sample.names

    def choose(options, concept):
        options = list(options)
        if concept in avoid:
            stem = _STEMS.get(concept, concept)
            options = [o for o in options if o and stem not in o]
        return options[0] if canonical else rng.choice(options)

    template = rng.choice(templates)
    pattern = names["pattern"]
    p = w = ""
    if "{w}" in template:
        w = choose(PATTERN_PHRASES[pattern], pattern)
    else:
        p = choose(PATTERN_ADJECTIVES[pattern], pattern)
    text = template.format(
        a="<a>",
        c=choose(COLOUR_WORDS[names["colour"]], names["colour"]),
        p=p,
        s=choose(SHAPE_WORDS[names["shape"]], names["shape"]),
        w=w,
    )
    words = text.replace(" ,", ",").split()
    for i, word in enumerate(words):
        if word == "<a>":  # the article agrees with the word that follows it
            words[i] = "an" if i + 1 < len(words) and words[i + 1][:1] in "aeiou" else "a"
    return " ".join(words).replace(" ,", ",")


# Words that give a concept away even inside a synonym ("with stripes" for striped).
_STEMS = {"striped": "strip", "dotted": "dot"}


def random_samples(
    n: int, rng: random.Random, fixed: dict[str, str] | None = None, exclude: dict[str, str] | None = None
) -> list[Sample]:
    """``n`` uniformly drawn attribute triples; ``fixed`` pins attributes, ``exclude`` forbids values."""
    fixed, exclude = fixed or {}, exclude or {}
    out = []
    for _ in range(n):
        idx = {}
        for head, values in HEADS.items():
            if head in fixed:
                idx[head] = values.index(fixed[head])
            else:
                choices = [i for i, v in enumerate(values) if exclude.get(head) != v]
                idx[head] = rng.choice(choices)
        out.append(Sample(idx["shape"], idx["colour"], idx["pattern"]))
    return out


# ----------------------------------------------------------------------------------------------- rendering


def _shape_masks(kind: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Soft-free inside tests for each shape on local coordinates (u right, v up, unit ~ shape radius)."""
    r2 = u * u + v * v
    circle = r2 <= 0.85**2
    square = torch.maximum(u.abs(), v.abs()) <= 0.74
    s3 = math.sqrt(3.0)
    vt = v + 0.12  # centre the triangle's bounding box
    triangle = (vt >= -0.55) & (s3 * u + vt <= 1.1) & (-s3 * u + vt <= 1.1)
    # Five-pointed star: exact straight edges between an outer tip (radius 1.05) and an inner vertex.
    rho, outer = 0.46, 1.05
    phi = torch.atan2(u, v)
    sector = 2 * math.pi / 5
    beta = ((phi + sector / 2) % sector - sector / 2).abs()
    a36 = math.pi / 5
    ny = rho * math.sin(a36)
    nx = outer - rho * math.cos(a36)
    rb = outer * ny / (ny * torch.cos(beta) + nx * torch.sin(beta))
    star = r2.sqrt() <= rb
    hx, hy = u * 1.2, v * 1.2 + 0.12
    heart = (hx * hx + hy * hy - 1) ** 3 - hx * hx * hy**3 <= 0
    masks = torch.stack([circle, square, triangle, star, heart], 0)  # (5, B, H, W)
    return masks.gather(0, kind.view(1, -1, 1, 1).expand(1, *u.shape)).squeeze(0)


def render(
    samples: list[Sample],
    generator: torch.Generator | None = None,
    size: int = IMAGE_SIZE,
    supersample: int = 4,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Render ``samples`` to an image batch (B, 3, size, size) in [0, 1].

    Size, position, rotation, colour tint, stripe angle and dot grid are drawn from ``generator``.
    """
    b = len(samples)
    if b == 0:
        return torch.zeros(0, 3, size, size, device=device)
    g = generator
    dev = torch.device(device)

    def rand(*shape):
        return torch.rand(*shape, generator=g).to(dev)

    shape = torch.tensor([s.shape for s in samples], device=dev)
    colour = torch.tensor([s.colour for s in samples], device=dev)
    pattern = torch.tensor([s.pattern for s in samples], device=dev)

    n = size * supersample
    coords = (torch.arange(n, device=dev, dtype=torch.float32) + 0.5) / supersample  # pixel units
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    xx, yy = xx.expand(b, n, n), yy.expand(b, n, n)

    radius = (0.30 + 0.12 * rand(b)) * size
    cx = size / 2 + (rand(b) - 0.5) * (size - 2 * radius) * 0.9
    cy = size / 2 + (rand(b) - 0.5) * (size - 2 * radius) * 0.9
    angle = (rand(b) - 0.5) * math.radians(30)
    dx = (xx - cx.view(-1, 1, 1)) / radius.view(-1, 1, 1)
    dy = -(yy - cy.view(-1, 1, 1)) / radius.view(-1, 1, 1)
    ca, sa = torch.cos(angle).view(-1, 1, 1), torch.sin(angle).view(-1, 1, 1)
    u, v = ca * dx + sa * dy, -sa * dx + ca * dy
    inside = _shape_masks(shape, u, v)

    # Patterns, in pixel units so that they stay visible whatever the shape's size.
    period = 4.6 + 1.2 * rand(b)
    stripe_angle = torch.randint(0, 4, (b,), generator=g).to(dev) * (math.pi / 4) + (rand(b) - 0.5) * 0.3
    phase = rand(b) * 2 * math.pi
    proj = xx * torch.cos(stripe_angle).view(-1, 1, 1) + yy * torch.sin(stripe_angle).view(-1, 1, 1)
    stripes = torch.sin(2 * math.pi * proj / period.view(-1, 1, 1) + phase.view(-1, 1, 1)) > 0
    dot_period = (5.2 + 1.0 * rand(b)).view(-1, 1, 1)
    ox, oy = rand(b).view(-1, 1, 1) * dot_period, rand(b).view(-1, 1, 1) * dot_period
    gx = (xx + ox) % dot_period - dot_period / 2
    gy = (yy + oy) % dot_period - dot_period / 2
    dots = gx * gx + gy * gy <= (0.25 * dot_period) ** 2
    is_striped = (pattern == 1).view(-1, 1, 1)
    is_dotted = (pattern == 2).view(-1, 1, 1)
    light = (is_striped & stripes) | (is_dotted & dots)

    base = torch.tensor([_RGB[c] for c in COLOURS], device=dev)[colour]  # (B, 3)
    base = (base + (rand(b, 3) - 0.5) * 0.08).clamp(0, 1)
    background = (0.93 + 0.07 * rand(b, 1)).expand(b, 3) + (rand(b, 3) - 0.5) * 0.04
    # Stripes and dots are a pale tint of the shape's colour, not the background, so the outline survives.
    highlight = base * 0.4 + 0.6

    fg = torch.where(light.unsqueeze(1), highlight.view(b, 3, 1, 1), base.view(b, 3, 1, 1))
    img = torch.where(inside.unsqueeze(1), fg, background.view(b, 3, 1, 1).expand(b, 3, n, n))
    img = torch.nn.functional.avg_pool2d(img, supersample)
    img = img + (rand(b, 3, size, size) - 0.5) * 0.02
    return img.clamp(0, 1)


def labels(samples: list[Sample], device="cpu") -> dict[str, torch.Tensor]:
    return {
        "shape": torch.tensor([s.shape for s in samples], device=device),
        "colour": torch.tensor([s.colour for s in samples], device=device),
        "pattern": torch.tensor([s.pattern for s in samples], device=device),
    }


def vocabulary() -> list[str]:
    """Every word that any caption can contain, in a stable order."""
    words: list[str] = []
    texts = [t for ts in (TRAIN_TEMPLATES, HELDOUT_TEMPLATES) for t in ts]
    for group in (SHAPE_WORDS, COLOUR_WORDS, PATTERN_ADJECTIVES, PATTERN_PHRASES):
        for options in group.values():
            texts.extend(options)
    texts.extend(["a", "an"])
    for text in texts:
        for token in (
            text.replace("{a}", " ")
            .replace("{c}", " ")
            .replace("{p}", " ")
            .replace("{s}", " ")
            .replace("{w}", " ")
            .replace(",", " , ")
            .replace("-", " - ")
            .split()
        ):
            if token not in words:
                words.append(token)
    return words
