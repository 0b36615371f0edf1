"""Probes of the toy world as an instrument: does it have the mechanisms of real models that the methods use?

* ``splice_test``: where does a toy denoiser read a word from? Two prompts that differ in one word (or one style
  phrase of the same length) are encoded; the first prompt's text states are generated with one slot group taken
  from the second's (the word's slots; the word's slots and those after it up to EOT; EOT; padding; for FLUX also
  the pooled CLIP vector), and the judge asks whether the image now shows the second prompt's value. A model
  that reads words from their own slots changes with the word's slots and not with EOT and padding.
* ``attention_locality``: on two-object prompts, the share of a shape word's cross-attention mass, over the
  occupied cells, that falls in its own object's cell.

Both work on any ``StableDiffusionPipeline`` / ``FluxPipeline`` of the v2 toy world with the scene judge.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from diffusers import FluxPipeline
from diffusers.models.attention_processor import AttnProcessor2_0

from .attention_grounding import cell_mass
from .scene_judge import SceneJudge
from .scenes import (
    CELLS,
    COLOURS,
    OBJECT_HEADS,
    SHAPES,
    STYLES,
    Scene,
    SceneObject,
    caption,
    caption_words,
    object_word_positions,
)

SLOT_GROUPS = ("word", "word_to_eot", "eot", "padding", "eot_padding")
FLUX_SLOT_GROUPS = (*SLOT_GROUPS, "pooled", "summary")  # summary: EOT + padding + pooled
# Style phrases of one token length, so that their slots line up: cartoon and grid.
STYLE_SPLICE = (("cartoon", "in line art"), ("grid", "on grid paper"))


@dataclass
class SplicePair:
    head: str
    a: str  # the prompt generated
    b: str  # the prompt whose slots are spliced in
    value_a: str
    value_b: str


def splice_pairs(head: str, n: int, seed: int = 0) -> list[SplicePair]:
    """``n`` prompt pairs for ``head`` (shape, colour, pattern or style): two-object scenes in the default style
    whose first object's attribute is swapped (the other object shows neither value), or, for style, the same
    scene in line art vs on grid paper."""
    rng = random.Random(seed)
    pairs = []
    while len(pairs) < n:
        objs = [SceneObject(c, rng.randrange(5), rng.randrange(6), rng.randrange(3)) for c in rng.sample(range(4), 2)]
        if head == "style":
            body = caption(Scene(tuple(objs)), rng, canonical=True)
            (sa, pa), (sb, pb) = STYLE_SPLICE if rng.random() < 0.5 else STYLE_SPLICE[::-1]
            pairs.append(SplicePair(head, f"{body} {pa}", f"{body} {pb}", sa, sb))
            continue
        values = OBJECT_HEADS[head]
        a, b = rng.sample(range(len(values)), 2)
        other = getattr(objs[1], head)
        if other in (a, b):
            continue
        first = {h: getattr(objs[0], h) for h in OBJECT_HEADS}
        scene_a = Scene((SceneObject(objs[0].cell, **(first | {head: a})), objs[1]))
        scene_b = Scene((SceneObject(objs[0].cell, **(first | {head: b})), objs[1]))
        text_a, text_b = caption(scene_a, rng, canonical=True), caption(scene_b, rng, canonical=True)
        words_a, words_b = text_a.split(), text_b.split()
        if len(words_a) != len(words_b) or sum(x != y for x, y in zip(words_a, words_b)) != 1:
            continue  # the article changed too ("a yellow" / "an orange"): not one word's slot
        pairs.append(SplicePair(head, text_a, text_b, values[a], values[b]))
    return pairs


def _groups(ids_a: torch.Tensor, ids_b: torch.Tensor, eos_id: int) -> dict[str, torch.Tensor]:
    """Boolean masks over the sequence for each slot group (ids: (L,))."""
    differ = ids_a != ids_b
    if not differ.any():
        raise ValueError("the two prompts tokenize alike")
    positions = torch.arange(len(ids_a))
    eot = int((ids_a == eos_id).int().argmax())
    if eot != int((ids_b == eos_id).int().argmax()):
        raise ValueError("the two prompts must have the same token length")
    first = int(positions[differ].min())
    return {
        "word": differ,
        "word_to_eot": (positions >= first) & (positions < eot),
        "eot": positions == eot,
        "padding": positions > eot,
        "eot_padding": positions >= eot,
    }


def _has(judged: dict[str, torch.Tensor], i: int, head: str, value: str) -> bool:
    if head == "style":
        return STYLES[int(judged["style"][i])] == value
    return value in [OBJECT_HEADS[head][int(k)] for k in judged[head][i] if k >= 0]


def _changed(judged, i: int, pair: SplicePair) -> bool:
    """The image shows the second prompt's value and not the first's."""
    return _has(judged, i, pair.head, pair.value_b) and not _has(judged, i, pair.head, pair.value_a)


@torch.no_grad()
def _encode(pipe, prompts: list[str]):
    """(token ids, text states[, pooled]) exactly as the pipeline computes them."""
    if isinstance(pipe, FluxPipeline):
        tok = pipe.tokenizer_2
        length = tok.model_max_length
        ids = tok(prompts, padding="max_length", max_length=length, truncation=True, return_tensors="pt").input_ids
        states = pipe.text_encoder_2(ids.to(pipe.device))[0]
        ids_1 = pipe.tokenizer(
            prompts,
            padding="max_length",
            max_length=pipe.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        pooled = pipe.text_encoder(ids_1.to(pipe.device)).pooler_output
        return ids, states, pooled, tok.eos_token_id
    tok = pipe.tokenizer
    ids = tok(prompts, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt")
    ids = ids.input_ids
    return ids, pipe.text_encoder(ids.to(pipe.device))[0], None, tok.eos_token_id


@torch.no_grad()
def _generate(pipe, states, pooled, seeds, steps, guidance, size):
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    if isinstance(pipe, FluxPipeline):
        _, neg, neg_pooled, _ = _encode(pipe, [""] * len(seeds))
        return pipe(
            prompt_embeds=states,
            pooled_prompt_embeds=pooled,
            negative_prompt_embeds=neg,
            negative_pooled_prompt_embeds=neg_pooled,
            true_cfg_scale=guidance,
            num_inference_steps=steps,
            height=size,
            width=size,
            generator=generators,
            output_type="pt",
        ).images
    _, neg, _, _ = _encode(pipe, [""] * len(seeds))
    return pipe(
        prompt_embeds=states,
        negative_prompt_embeds=neg,
        guidance_scale=guidance,
        num_inference_steps=steps,
        height=size,
        width=size,
        generator=generators,
        output_type="pt",
    ).images


def splice_test(
    pipe,
    judge: SceneJudge,
    pairs: list[SplicePair],
    seeds_per_pair: int = 2,
    steps: int = 25,
    guidance: float = 7.5,
    size: int = 64,
    batch: int = 16,
) -> dict[str, float]:
    """The share of images showing the second prompt's value, per slot group (plus ``full``: the second prompt
    itself, and ``none``: the first, unspliced)."""
    flux = isinstance(pipe, FluxPipeline)
    groups = FLUX_SLOT_GROUPS if flux else SLOT_GROUPS
    hits = {g: 0 for g in ("full", "none", *groups)}
    total = 0
    jobs = [(p, s) for p in pairs for s in range(seeds_per_pair)]
    for start in range(0, len(jobs), batch):
        chunk = jobs[start : start + batch]
        ids_a, states_a, pooled_a, eos = _encode(pipe, [p.a for p, _ in chunk])
        ids_b, states_b, pooled_b, _ = _encode(pipe, [p.b for p, _ in chunk])
        seeds = [1000 * i + s for i, (_, s) in enumerate(chunk, start)]
        variants = {"full": (states_b, pooled_b), "none": (states_a, pooled_a)}
        for group in groups:
            states, pooled = states_a.clone(), None if pooled_a is None else pooled_a.clone()
            for k in range(len(chunk)):
                if group in ("pooled", "summary"):
                    pooled[k] = pooled_b[k]
                if group != "pooled":
                    masks = _groups(ids_a[k], ids_b[k], eos)
                    mask = masks["eot_padding"] if group == "summary" else masks[group]
                    states[k, mask] = states_b[k, mask]
            variants[group] = (states, pooled)
        for name, (states, pooled) in variants.items():
            images = _generate(pipe, states, pooled, seeds, steps, guidance, size)
            judged = judge.predict(images.float())
            hits[name] += sum(_changed(judged, i, p) for i, (p, _) in enumerate(chunk))
        total += len(chunk)
    return {k: v / total for k, v in hits.items()}


class _AttentionRecorder(AttnProcessor2_0):
    """Diffusers' processor, plus each cross-attention map of the conditional half of the CFG batch."""

    def __init__(self, records: list):
        super().__init__()
        self.records = records

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        if encoder_hidden_states is not None:
            flat = hidden_states if hidden_states.ndim == 3 else hidden_states.flatten(2).transpose(1, 2)
            query = attn.head_to_batch_dim(attn.to_q(flat))
            key = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))
            maps = attn.get_attention_scores(query, key).unflatten(0, (-1, attn.heads))  # (B, heads, Q, L)
            self.records.append(maps[maps.shape[0] // 2 :].mean(1))
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kwargs)


def locality_prompts(n: int, seed: int = 0) -> list[tuple[str, Scene]]:
    """Two-object prompts (default style, distinct shapes), canonical wording."""
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        cells = rng.sample(range(CELLS), 2)
        shapes = rng.sample(range(5), 2)
        scene = Scene(tuple(SceneObject(c, s, rng.randrange(6), rng.randrange(3)) for c, s in zip(cells, shapes)))
        out.append((caption(scene, rng, canonical=True), scene))
    return out


@torch.no_grad()
def attention_locality(
    pipe, judge: SceneJudge, prompts: list[tuple[str, Scene]], steps: int = 25, guidance: float = 7.5, size=64
) -> dict[str, float]:
    """Mean share of each shape word's cross-attention mass (over occupied cells) in its own object's cell, over
    the images whose two objects the judge finds with the prompt's shapes (``judged`` of them); the same for the
    colour words (``colour_locality``; prompts whose two objects share a colour left out)."""
    unet = pipe.unet
    records: list[torch.Tensor] = []
    original = dict(unet.attn_processors)
    unet.set_attn_processor(_AttentionRecorder(records))
    shares, by_third, colour_shares, usable = [], [], [], 0
    try:
        for k, (prompt, scene) in enumerate(prompts):
            records.clear()
            ids, states, _, _ = _encode(pipe, [prompt])
            images = _generate(pipe, states, None, [k], steps, guidance, size)
            judged = judge.predict(images.float())
            found = {int(s): c for c, s in enumerate(judged["shape"][0].tolist()) if s >= 0}
            occupied = [c for c in range(CELLS) if judged["presence"][0, c] == 1]
            tokens = pipe.tokenizer.convert_ids_to_tokens(ids[0])
            wanted = {o.shape for o in scene.objects}
            if set(found) != wanted or len(occupied) != 2:
                continue
            usable += 1
            per_step = len(records) // steps  # cross-attention layers called per denoising step
            total = torch.zeros(len(tokens), CELLS)
            thirds = torch.zeros(3, len(tokens), CELLS)
            for r, maps in enumerate(records):  # (1, Q, L)
                mass = cell_mass(maps)[0] / maps.shape[1]
                total += mass
                thirds[min(2, 3 * (r // per_step) // steps)] += mass
            for obj in scene.objects:
                slot = tokens.index(SHAPES[obj.shape] + "</w>")
                shares.append(float(total[slot, found[obj.shape]] / total[slot, occupied].sum()))
                by_third.append(
                    [float(thirds[k, slot, found[obj.shape]] / thirds[k, slot, occupied].sum()) for k in range(3)]
                )
                colour = COLOURS[obj.colour] + "</w>"
                if tokens.count(colour) == 1:  # two objects of one colour: the word belongs to both
                    slot = tokens.index(colour)
                    colour_shares.append(float(total[slot, found[obj.shape]] / total[slot, occupied].sum()))
    finally:
        unet.set_attn_processor(original)
    n = max(1, len(shares))
    return {
        "locality": sum(shares) / n,
        # The same share over the first, middle and last third of the denoising steps.
        "by_step_third": [sum(b[k] for b in by_third) / n for k in range(3)],
        # The colour words' share, in the cell where their object's shape is drawn.
        "colour_locality": sum(colour_shares) / max(1, len(colour_shares)),
        "judged": usable,
        "prompts": len(prompts),
    }


def binding_swap_prompts(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """Pairs of two-object prompts (canonical wording, every attribute distinct) that name the same shapes,
    colours and patterns but bind the colours the other way round: "a red star and a blue heart" | "a blue star
    and a red heart"."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        cells, shapes = rng.sample(range(CELLS), 2), rng.sample(range(5), 2)
        colours, patterns = rng.sample(range(6), 2), rng.sample(range(3), 2)
        a = Scene(tuple(SceneObject(cells[k], shapes[k], colours[k], patterns[k]) for k in range(2)))
        b = Scene(tuple(SceneObject(cells[k], shapes[k], colours[1 - k], patterns[k]) for k in range(2)))
        pairs.append((caption(a, rng, canonical=True), caption(b, rng, canonical=True)))
    return pairs


@torch.no_grad()
def binding_swap(
    pipe, judge: SceneJudge, pairs: list[tuple[str, str]], steps: int = 25, guidance: float = 7.5, size=64, batch=16
) -> dict[str, float]:
    """Does the model read which colour belongs to which shape? Each pair is drawn from one seed; of the pairs
    whose two images have the same occupied cells (``same_cells``), the share whose cells also keep their shapes
    (``same_shapes``) and their colours (``same_colours``). A model that reads the caption as a bag of words gives
    both prompts one image (``same_colours`` near ``same_shapes``); one that binds swaps the colours (near 0)."""
    judged = []
    for side in range(2):
        parts = []
        for start in range(0, len(pairs), batch):
            chunk = [p[side] for p in pairs[start : start + batch]]
            _, states, pooled, _ = _encode(pipe, chunk)
            images = _generate(pipe, states, pooled, list(range(start, start + len(chunk))), steps, guidance, size)
            parts.append(judge.predict(images.float()))
        judged.append({h: torch.cat([p[h] for p in parts]) for h in ("presence", "shape", "colour")})
    a, b = judged
    cells = (a["presence"] == b["presence"]).all(1)
    shapes = cells & (a["shape"] == b["shape"]).all(1)
    colours = cells & (a["colour"] == b["colour"]).all(1)
    kept = max(1, int(cells.sum()))
    return {
        "same_cells": float(cells.float().mean()),
        "same_shapes": float(shapes.sum()) / kept,
        "same_colours": float(colours.sum()) / kept,
        "pairs": len(pairs),
    }


def shapes_drawn(named: list[list[int]], order: list[int], cells: list[list[int]]) -> str | None:
    """For a prompt naming two different shapes (``order``: the objects' indices in caption order): which were
    drawn — "both", "first twice", "second twice" or "other" (a wrong count or a shape not named)."""
    if len(order) != 2 or named[order[0]][0] == named[order[1]][0]:
        return None
    first, second = named[order[0]][0], named[order[1]][0]
    drawn = sorted(c[0] for c in cells)
    for name, shapes in (("both", [first, second]), ("first twice", [first] * 2), ("second twice", [second] * 2)):
        if drawn == sorted(shapes):
            return name
    return "other"


@torch.no_grad()
def clean_phrase(pipe, states: torch.Tensor, prompts: list[str], scenes: list[Scene], which: int) -> torch.Tensor:
    """``states`` (an SD pipeline's text states of ``prompts``, captions of ``scenes``) with the ``which``-th object
    phrase (0-based, caption order) of each prompt replaced by the phrase encoded alone ("a " + its words): the
    phrase then carries nothing of the others, which a causal encoder mixes into it. Prompts with fewer phrases
    are left as they are."""
    states = states.clone()
    rows, phrases = [], []
    for i, (text, scene) in enumerate(zip(prompts, scenes)):
        placed = object_word_positions(text, scene)
        if len(placed) > which:
            words, positions = caption_words(text), placed[which][1]
            rows.append((i, positions))
            phrases.append("a " + " ".join(words[p] for p in positions))
    if not phrases:
        return states
    alone = _encode(pipe, phrases)[1]
    for (i, positions), lone in zip(rows, alone):
        for k, p in enumerate(positions):  # word p is token p + 1 after the start token; alone, token k + 2
            states[i, p + 1] = lone[k + 2]
    return states
