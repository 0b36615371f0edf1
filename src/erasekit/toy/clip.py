"""A toy CLIP for toy world v2, trained contrastively from scratch, and a toy T5 encoder aligned to it.

The CLIP's text tower has exactly the configuration of ``architectures.build_clip_text``, so its weights become
a pipeline's ``text_encoder`` unchanged (``clip_text_encoder``); its vision tower is a small ViT over the 64×64
scenes. The T5 encoder (``architectures.build_t5``) for toy-flux learns the same embedding space: its output,
mean-pooled over the caption's tokens and projected, is trained against the frozen CLIP's image embeddings.

Training is a plain loop (``_loop``) with the shape of ``train._run`` (a ``loss_fn(step) -> (loss, logs)``,
AdamW, warm-up + cosine, grad clipping 1.0, a time budget), so it can move onto ``_run`` later. Everything is
seeded; everything is saved as safetensors and JSON, never pickle.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import (
    CLIPConfig,
    CLIPModel,
    CLIPProcessor,
    CLIPTextModel,
    CLIPTokenizer,
    CLIPVisionConfig,
    T5EncoderModel,
    T5TokenizerFast,
)
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from ..errors import ErasekitError, ModelNotFoundError
from . import architectures as arch
from . import scenes
from .tokenizers import MODEL_MAX_LENGTH, build_clip_tokenizer, build_t5_tokenizer
from .train import TrainConfig, _run

CLIP_MAX_LENGTH = MODEL_MAX_LENGTH  # 77
T5_MAX_LENGTH = 48  # v2 captions reach ~34 T5 tokens (three fully described objects and a style)
HEAD_FILE = "projection.safetensors"
LOG_SCALE_MAX = math.log(100.0)  # CLIP's cap on the learned temperature: logits scale at most 100

# The vision tower per size; the text tower is always ``architectures.build_clip_text``'s.
VISION = {
    "toy": dict(patch_size=8, hidden_size=96, num_hidden_layers=4, num_attention_heads=4, intermediate_size=384),
    "tiny": dict(patch_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
}

# Defaults of the two trainers (2-core CPU scale); ``train_toy_clip``/``train_toy_t5`` take overrides.
DEFAULTS = {
    "clip": dict(steps=4000, batch_size=128, lr=1e-3, warmup=200),
    "t5": dict(steps=2000, batch_size=128, lr=1e-3, warmup=100),
}


# -------------------------------------------------------------------------------------------- tokenizers


def build_scene_clip_tokenizer() -> CLIPTokenizer:
    """The v2 CLIP tokenizer: ``tokenizers.build_clip_tokenizer``'s scheme over ``scenes.vocabulary()``'s words
    (every [a-z]+ word one token; ``-`` and ``,`` are single characters anyway)."""
    return build_clip_tokenizer(scenes.vocabulary())


def build_scene_t5_tokenizer() -> T5TokenizerFast:
    return build_t5_tokenizer(words=scenes.vocabulary(), max_length=T5_MAX_LENGTH)


def sample_captions(n: int = 5000, seed: int = 0) -> list[str]:
    """Captions of the v2 distribution: training captions (with omissions and bare ones) and full captions,
    a third of them of three-object scenes (the longest)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if i % 3 == 0:
            out.append(scenes.training_pair(rng)[0])
        elif i % 3 == 1:
            out.append(scenes.caption(scenes.random_scene(rng), rng))
        else:
            out.append(scenes.caption(scenes.random_scene(rng, n_objects=scenes.MAX_OBJECTS), rng))
    return out


def check_caption_lengths(clip_tokenizer=None, t5_tokenizer=None, n: int = 5000, seed: int = 0) -> dict:
    """The longest of ``n`` sampled captions in CLIP and T5 tokens (specials included); raises if one would be
    truncated (over 77 CLIP or 48 T5 tokens)."""
    captions = sample_captions(n, seed)
    out = {}
    for name, tok, limit in (("clip", clip_tokenizer, CLIP_MAX_LENGTH), ("t5", t5_tokenizer, T5_MAX_LENGTH)):
        if tok is None:
            continue
        lengths = [len(ids) for ids in tok(captions).input_ids]
        longest = max(range(n), key=lengths.__getitem__)
        out[f"{name}_max_tokens"] = lengths[longest]
        if lengths[longest] > limit:
            raise ErasekitError(
                f"a toy-world v2 caption takes {lengths[longest]} {name} tokens, over the {limit} the toy models "
                f"read: {captions[longest]!r}"
            )
    return out


# ------------------------------------------------------------------------------------------------- CLIP


def build_toy_clip(vocab_size: int, pad_token_id: int, size: str = "toy") -> CLIPModel:
    """A CLIPModel whose text tower is ``architectures.build_clip_text(vocab_size, size, pad_token_id)``'s
    configuration (bos/eos the last two ids) and whose vision tower is a small ViT over 64×64 images."""
    if size not in VISION:
        raise ValueError(f"size must be one of {sorted(VISION)}, not {size!r}")
    with torch.device("meta"):  # only the configuration: no weights, no draws from the global RNG
        text_config = arch.build_clip_text(vocab_size, size=size, pad_token_id=pad_token_id).config
    vision_config = CLIPVisionConfig(image_size=scenes.SCENE_SIZE, num_channels=3, **VISION[size])
    config = CLIPConfig(
        text_config=text_config.to_dict(),
        vision_config=vision_config.to_dict(),
        projection_dim=text_config.projection_dim,
    )
    return CLIPModel(config).eval()


def clip_text_encoder(clip: CLIPModel) -> CLIPTextModel:
    """The CLIP's text tower as a stand-alone ``CLIPTextModel`` (a pipeline's ``text_encoder``), same weights."""
    encoder = CLIPTextModel(clip.config.text_config)
    # transformers 5: ``CLIPModel.text_model`` is a CLIPTextModel; 4.x: both hold a CLIPTextTransformer there.
    target = getattr(encoder, "text_model", encoder)
    target.load_state_dict(clip.text_model.state_dict(), strict=True)
    return encoder.to(device=clip.device, dtype=clip.dtype).eval()


def pixel_values(clip: CLIPModel, images: torch.Tensor) -> torch.Tensor:
    """Images (B, 3, H, W) in [0, 1] → the vision tower's input: resized to its size if needed, normalised with
    CLIP's mean and std."""
    size = clip.config.vision_config.image_size
    if images.shape[-2:] != (size, size):
        images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    mean = torch.tensor(OPENAI_CLIP_MEAN, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_CLIP_STD, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images - mean) / std


def image_features(clip: CLIPModel, images: torch.Tensor) -> torch.Tensor:
    """L2-normalised projected image embeddings (B, projection_dim) of images in [0, 1]."""
    pooled = clip.vision_model(pixel_values=pixel_values(clip, images)).pooler_output
    return F.normalize(clip.visual_projection(pooled), dim=-1)


def clip_input_ids(tokenizer: CLIPTokenizer, captions: list[str], device=None, padding="longest") -> torch.Tensor:
    # Padding with the end token to the batch's longest caption gives the pooled (first end token) and every
    # earlier state exactly as the pipelines' padding to 77 does: the text tower is causal.
    ids = tokenizer(
        list(captions), padding=padding, max_length=CLIP_MAX_LENGTH, truncation=True, return_tensors="pt"
    ).input_ids
    return ids.to(device) if device is not None else ids


def text_features(clip: CLIPModel, tokenizer: CLIPTokenizer, captions: list[str]) -> torch.Tensor:
    """L2-normalised projected text embeddings (B, projection_dim). No attention mask, as the pipelines call
    their text encoder."""
    pooled = clip.text_model(input_ids=clip_input_ids(tokenizer, captions, clip.device)).pooler_output
    return F.normalize(clip.text_projection(pooled), dim=-1)


def lone_phrases(captions: list[str], offset: int = 1) -> tuple[list[str], list[tuple[int, int, int, int]]]:
    """Every object phrase of ``captions`` as it is encoded alone ("a " + its attribute words, as
    ``probes.clean_phrase`` encodes it), and for each of its words (caption, token in the caption, lone phrase,
    token in the lone phrase): word p of a text is token p + ``offset`` (CLIP: 1, after its start token; T5: 0);
    in "a …", word k is word k + 1."""
    phrases, pairs = [], []
    for i, text in enumerate(captions):
        words = scenes.caption_words(text)
        for _, positions, _ in scenes.phrase_attributes(text):
            j = len(phrases)
            phrases.append("a " + " ".join(words[p] for p in positions))
            pairs += [(i, p + offset, j, k + 1 + offset) for k, p in enumerate(positions)]
    return phrases, pairs


def lone_attributes(captions: list[str], offset: int = 1) -> tuple[list[str], list[tuple[int, int, int, int]]]:
    """``lone_phrases`` one level down: every attribute phrase of ``captions`` ("star", "round shape", "with
    stripes") encoded alone, as UCE and GIE encode a concept, and the (caption, token, lone text, token) pairs of
    its words."""
    texts, pairs = [], []
    for i, text in enumerate(captions):
        words = scenes.caption_words(text)
        for _, _, spans in scenes.phrase_attributes(text):
            for span in spans:
                j = len(texts)
                texts.append(" ".join(words[p] for p in span))
                pairs += [(i, p + offset, j, k + offset) for k, p in enumerate(span)]
    return texts, pairs


def phrase_locality_loss(
    caption_states: torch.Tensor, lone_states: torch.Tensor, pairs, margin: float = 1.0
) -> torch.Tensor:
    """Mean (1 − cosine) between each attribute word's final state in its caption and in its phrase encoded
    alone (``lone_phrases``' pairs): zero when no phrase carries anything of the caption's other phrases. With
    ``margin`` m < 1, max(0, m − cosine): pairs at least that close are left alone.

    Why: the text tower is causal and contrastive training reads only its end token, so the word slots are free
    scratch space; the first toy CLIPs mixed the first-named object into the second's slots (a shape word's
    cosine to its lone state: 0.84 as the first object, 0.14 as the second), and toy-sd drew the first-named
    shape in both cells. Real CLIP's word slots stay mostly their own word's ("Follow the Flow", arXiv
    2504.01137)."""
    if not pairs:
        return caption_states.new_zeros(())
    index = torch.tensor(pairs, device=caption_states.device)
    mine = caption_states[index[:, 0], index[:, 1]]
    alone = lone_states[index[:, 2], index[:, 3]]
    return (margin - F.cosine_similarity(mine, alone, dim=-1)).clamp(min=0).mean()


def word_decoding_loss(states: torch.Tensor, input_ids: torch.Tensor, decoder: nn.Linear, tokenizer) -> torch.Tensor:
    """Cross-entropy of reading each word slot's own token back from its final state with a linear ``decoder``
    (the start, end and padding slots are skipped): it keeps the word slots informative, which
    ``phrase_locality_loss`` alone could satisfy by making them all alike."""
    ids = (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    specials = torch.tensor([i for i in ids if i is not None])
    keep = ~torch.isin(input_ids, specials.to(input_ids.device))
    if not keep.any():
        return states.new_zeros(())
    return F.cross_entropy(decoder(states[keep]), input_ids[keep])


READOUT_HEADS = tuple(scenes.OBJECT_HEADS)  # shape, colour, pattern


def phrase_readout_targets(
    captions: list[str], offset: int = 1, causal: bool = True
) -> tuple[list[tuple[int, int]], torch.Tensor]:
    """For every attribute word of every object phrase: its (caption, token) slot (word p is token p + ``offset``)
    and, per object head, what its phrase has named up to and including that word (1 + the value's index in
    ``scenes.OBJECT_HEADS``; 0: not named yet, or not at all). In "a red striped star", "star" is labelled (star,
    red, striped), "red" (–, red, –): a causal text tower can know no more. ``causal=False`` (T5): every word is
    labelled with its whole phrase. Returns (slots, labels (N, 3) long)."""
    table = {tuple(words): (head, value) for words, head, value in scenes._phrase_words()}
    slots, labels = [], []
    for i, text in enumerate(captions):
        words = scenes.caption_words(text)
        for _, positions, spans in scenes.phrase_attributes(text):
            named = [table[tuple(words[q] for q in span)] + (span[-1],) for span in spans]
            for p in positions:
                row = [0] * len(READOUT_HEADS)
                for head, value, end in named:
                    if end <= p or not causal:
                        row[READOUT_HEADS.index(head)] = 1 + scenes.OBJECT_HEADS[head].index(value)
                slots.append((i, p + offset))
                labels.append(row)
    return slots, torch.tensor(labels, dtype=torch.long).view(-1, len(READOUT_HEADS))


def phrase_readout_loss(states: torch.Tensor, slots, labels: torch.Tensor, readout: nn.ModuleList) -> torch.Tensor:
    """Mean over object heads of the cross-entropy of reading ``phrase_readout_targets``' labels from each
    attribute word's final state with a linear ``readout`` per head.

    Why: with its word slots pulled onto the bare words (``lone_attributes``), the noun of "a red star" carries
    nothing of "red", the colour words of a two-object caption are alike whichever object they belong to, and the
    denoiser attends from each object's cell to its colour word at chance (toy-sd-c4: 0.52). A noun that carries
    its phrase's colour is what a cell that finds its noun can bind by; real CLIP's nouns carry their modifiers
    (the binding probes of "Follow the Flow", arXiv 2504.01137). Kept beside the word term's margin, so a noun
    stays near its bare word."""
    if not slots:
        return states.new_zeros(())
    index = torch.tensor(slots, device=states.device)
    picked = states[index[:, 0], index[:, 1]]
    labels = labels.to(states.device)
    return sum(F.cross_entropy(head(picked), labels[:, k]) for k, head in enumerate(readout)) / len(readout)


def contrastive_loss(image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over a batch of matched pairs (row i of each is a pair).

    ``logit_scale`` is the log of the inverse temperature (``CLIPModel.logit_scale``); the scale is capped at
    100. Embeddings are L2-normalised here (a no-op for ``image_features``/``text_features``).
    """
    return contrastive_loss_with_negatives(image_embeds, text_embeds, text_embeds[:0], logit_scale)


def _swap_table() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Per attribute word of a caption: its head, and the words that name another value of that head in the
    same role (a shape noun for a shape noun, a pattern noun for a pattern noun). Multi-word synonyms enter by
    their distinctive word ("round" of "round shape")."""
    classes = (
        ("shape", {v: [w.split()[0] for w in ws] for v, ws in scenes.SHAPE_WORDS.items()}),
        ("colour", {v: list(ws) for v, ws in scenes.COLOUR_WORDS.items()}),
        ("pattern", {v: [w for w in ws if w] for v, ws in scenes.PATTERN_ADJECTIVES.items()}),
        (
            "pattern",
            {v: [w.split()[-1] for w in ws if w.startswith("with ")] for v, ws in scenes.PATTERN_PHRASES.items()},
        ),
    )
    table: dict[str, tuple[str, tuple[str, ...]]] = {}
    for head, words_of in classes:
        for value, words in words_of.items():
            others = tuple(w for v, ws in words_of.items() if v != value for w in ws)
            for word in words:
                table[word] = (head, others)
    return table


_SWAPS = _swap_table()


def hard_negative(caption: str, rng: random.Random, head: str | None = None) -> str | None:
    """The caption with one attribute word (a shape, colour or pattern word, chosen at random; of ``head`` only
    when given) replaced by a word of another value of its head: a caption that is false of the image (NegCLIP's
    swap negatives, Yuksekgonul et al., ICLR 2023). ``None`` when the caption names no such word."""
    words = caption.split(" ")
    slots = [i for i, w in enumerate(words) if w in _SWAPS and head in (None, _SWAPS[w][0])]
    if not slots:
        return None
    i = rng.choice(slots)
    words[i] = rng.choice(_SWAPS[words[i]][1])
    if i > 0 and words[i - 1] in ("a", "an"):  # the article agrees with the new word
        words[i - 1] = "an" if words[i][:1] in "aeiou" else "a"
    return " ".join(words)


@torch.no_grad()
def swap_accuracy(clip: CLIPModel, tokenizer: CLIPTokenizer, images: torch.Tensor, captions: list[str], seed=0):
    """Per head, the share of (image, caption) pairs whose caption the CLIP scores above the same caption with
    one word of that head swapped (``hard_negative``): can the embedding tell a circle from a square?"""
    return swap_accuracy_of(image_features(clip, images), lambda c: text_features(clip, tokenizer, c), captions, seed)


@torch.no_grad()
def swap_accuracy_of(image_embeds: torch.Tensor, text_fn, captions: list[str], seed=0) -> dict[str, float]:
    """``swap_accuracy`` for any text encoder: ``text_fn(captions)`` gives unit embeddings in the image space."""
    rng = random.Random(seed)
    true = (image_embeds * text_fn(captions)).sum(-1)
    out = {}
    for head in ("shape", "colour", "pattern"):
        pairs = [(i, n) for i, c in enumerate(captions) if (n := hard_negative(c, rng, head)) is not None]
        if pairs:
            rows = torch.tensor([i for i, _ in pairs])
            negative = (image_embeds[rows] * text_fn([n for _, n in pairs])).sum(-1)
            out[head] = float((true[rows] > negative).float().mean())
    return out


def _negatives(captions: list[str], heads: tuple[str, ...], rng: random.Random) -> list[str]:
    """One swap negative per caption and entry of ``heads`` (``"any"``: a random head), where one exists."""
    return [
        n
        for head in heads
        for c in captions
        if (n := hard_negative(c, rng, None if head == "any" else head)) is not None
    ]


def _loss_with_swaps(img, txt, captions, text_fn, heads: tuple[str, ...], rng: random.Random, logit_scale):
    """The trainers' objective: ``contrastive_loss`` with the captions' swap negatives (``_negatives``) added."""
    negatives = _negatives(captions, heads, rng) if heads else []
    if not negatives:
        return contrastive_loss(img, txt, logit_scale)
    return contrastive_loss_with_negatives(img, txt, text_fn(negatives), logit_scale)


def contrastive_loss_with_negatives(
    image_embeds: torch.Tensor, text_embeds: torch.Tensor, negative_embeds: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """``contrastive_loss`` with extra captions false of every image (``negative_embeds``, (N, D), N ≥ 0) among
    the image → text candidates; text → image is unchanged. With N = 0 it equals ``contrastive_loss``."""
    image_embeds = F.normalize(image_embeds, dim=-1)
    texts = F.normalize(torch.cat([text_embeds, negative_embeds]), dim=-1)
    logits = logit_scale.exp().clamp(max=100.0) * image_embeds @ texts.t()  # (B, B + N)
    target = torch.arange(image_embeds.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits[:, : len(target)].t(), target))


def retrieval_accuracy(image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> dict[str, float]:
    """Top-1 retrieval within the batch: caption → image (``text_to_image``) and image → caption."""
    sims = text_embeds @ image_embeds.t()
    target = torch.arange(sims.shape[0], device=sims.device)
    return {
        "text_to_image": float((sims.argmax(1) == target).float().mean()),
        "image_to_text": float((sims.argmax(0) == target).float().mean()),
    }


def _scene_key(scene: scenes.Scene):
    # What a full caption says of a scene: its objects (not their cells) and its style.
    return scene.style, tuple(sorted((o.shape, o.colour, o.pattern) for o in scene.objects))


def full_caption_batch(n: int = 128, seed: int = 1234, device="cpu"):
    """``n`` fresh scenes with full captions (every attribute and the style named), rendered: (images, captions,
    ceiling), ``ceiling`` the best expected top-1 caption → image accuracy (captions do not name cells, so
    scenes with the same objects in other cells are indistinguishable: a caption of a group of k scores 1/k)."""
    rng = random.Random(seed)
    batch = [scenes.random_scene(rng) for _ in range(n)]
    captions = [scenes.caption(s, rng) for s in batch]
    images = scenes.render_scenes(batch, torch.Generator().manual_seed(seed), device=device)
    counts = Counter(_scene_key(s) for s in batch)
    ceiling = sum(1 / counts[_scene_key(s)] for s in batch) / n
    return images, captions, ceiling


@torch.no_grad()
def evaluate_clip(clip: CLIPModel, tokenizer: CLIPTokenizer, images: torch.Tensor, captions: list[str], seed=0) -> dict:
    """Top-1 retrieval both ways and the per-head swap accuracy (``swap_<head>``) on the given pairs."""
    was_training = clip.training
    clip.eval()
    out = retrieval_accuracy(image_features(clip, images), text_features(clip, tokenizer, captions))
    out |= {f"swap_{head}": v for head, v in swap_accuracy(clip, tokenizer, images, captions, seed).items()}
    clip.train(was_training)
    return out


@torch.no_grad()
def phrase_cosines(clip: CLIPModel, tokenizer: CLIPTokenizer, captions: list[str]) -> dict[str, float]:
    """Per object phrase place (``phrase_cos_1`` for the first-named, ``_2``, …): the mean cosine between an
    attribute word's state in its caption and in its phrase encoded alone (1: the phrase carries nothing of the
    others); ``word_cos_<k>`` the same against each attribute phrase encoded alone (``lone_attributes``)."""
    return slot_cosines(lambda texts: clip_states(clip, tokenizer, texts), captions, offset=1)


def clip_states(clip: CLIPModel, tokenizer: CLIPTokenizer, texts: list[str]) -> torch.Tensor:
    """The text tower's final states (B, L, D), padded to the longest text, as the pipelines encode."""
    return clip.text_model(input_ids=clip_input_ids(tokenizer, texts, clip.device)).last_hidden_state


def slot_cosines(encode, captions: list[str], offset: int) -> dict[str, float]:
    """``phrase_cosines`` for any text tower: ``encode(texts) -> (B, L, D)`` final states; word p of a text in
    slot p + ``offset``."""
    out = {}
    states = encode(captions)
    for name, lone_fn in (("phrase", lone_phrases), ("word", lone_attributes)):
        texts, pairs = lone_fn(captions, offset)
        if not pairs:
            continue
        lone = encode(texts)
        place = _phrase_places(captions, pairs, offset)
        index = torch.tensor(pairs, device=states.device)
        cos = F.cosine_similarity(states[index[:, 0], index[:, 1]], lone[index[:, 2], index[:, 3]], dim=-1)
        for k in range(int(place.max()) + 1):
            out[f"{name}_cos_{k + 1}"] = float(cos[place.to(cos.device) == k].mean())
    return out


def _phrase_places(captions: list[str], pairs, offset: int = 1) -> torch.Tensor:
    """The object phrase place (0: first-named) of each pair's caption word."""
    place_of = {}
    for i, text in enumerate(captions):
        for k, (_, positions, _) in enumerate(scenes.phrase_attributes(text)):
            place_of.update({(i, p + offset): k for p in positions})
    return torch.tensor([place_of[(i, t)] for i, t, _, _ in pairs])


@dataclass
class TokenTerms:
    """The token-level terms a text tower trains with beside its contrastive loss (a weight of 0: off).

    ``phrase_locality``: ``phrase_locality_loss`` against each object phrase encoded alone (``lone_phrases``)
    and ``word_decoding_loss``; ``word_locality``: ``phrase_locality_loss`` against each attribute encoded bare
    (``lone_attributes``, how UCE and GIE encode a concept), with the decoding term too; ``word_margin``: its
    cosine margin; ``phrase_readout``: ``phrase_readout_loss``. The decoder and read-outs train with the tower and
    are not saved. ``offset``: the slot of a text's first word; ``causal``: whether a word sees only the words
    before it (the read-out's labels)."""

    phrase_locality: float = 0.0
    word_locality: float = 0.0
    word_margin: float = 1.0
    phrase_readout: float = 0.0
    offset: int = 1
    causal: bool = True

    def settings(self) -> dict[str, float]:
        """The terms that are on (and a margin that is not 1), for a run's config."""
        out = {k: float(getattr(self, k)) for k in ("phrase_locality", "word_locality", "phrase_readout")}
        out = {k: v for k, v in out.items() if v}
        return out | ({"word_margin": float(self.word_margin)} if self.word_margin != 1.0 else {})

    def heads(self, hidden: int, vocab: int) -> nn.ModuleDict:
        heads = nn.ModuleDict()
        if self.phrase_locality or self.word_locality:
            heads["decoder"] = nn.Linear(hidden, vocab)
        if self.phrase_readout:
            heads["readout"] = nn.ModuleList(nn.Linear(hidden, 1 + len(scenes.OBJECT_HEADS[h])) for h in READOUT_HEADS)
        return heads

    def loss(self, states, ids, captions, encode, heads: nn.ModuleDict, tokenizer) -> tuple[torch.Tensor, dict]:
        """The weighted sum of the terms that are on for a batch (``states``/``ids``: the captions' final states
        and token ids; ``encode(texts) -> states`` for the lone texts) and each term's value."""
        total, logs = states.new_zeros(()), {}
        for name, weight, lone_fn, margin in (
            ("locality", self.phrase_locality, lone_phrases, 1.0),
            ("word_locality", self.word_locality, lone_attributes, self.word_margin),
        ):
            if weight:
                texts, pairs = lone_fn(captions, self.offset)
                logs[name] = phrase_locality_loss(states, encode(texts), pairs, margin)
                total = total + weight * logs[name]
        if "decoder" in heads:
            logs["decoding"] = word_decoding_loss(states, ids, heads["decoder"], tokenizer)
            total = total + max(self.phrase_locality, self.word_locality) * logs["decoding"]
        if "readout" in heads:
            slots, labels = phrase_readout_targets(captions, self.offset, self.causal)
            logs["readout"] = phrase_readout_loss(states, slots, labels, heads["readout"])
            total = total + self.phrase_readout * logs["readout"]
        return total, logs


def _config(name: str, **overrides) -> TrainConfig:
    values = DEFAULTS[name] | {k: v for k, v in overrides.items() if v is not None}
    return TrainConfig(**values, caption_dropout=0.0)


def _write_log(out_dir: Path, name: str, log: dict) -> None:
    (out_dir / f"training-{name}.json").write_text(json.dumps(log, indent=2))


def train_toy_clip(
    out_dir: str | Path | None,
    steps: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    device: str | None = None,
    time_budget_s: float | None = None,
    size: str = "toy",
    warmup: int | None = None,
    eval_every: int | None = None,
    checkpoint_dir: str | Path | None = None,
    hard_negatives: tuple[str, ...] = ("any", "shape"),
    init: CLIPModel | None = None,
    phrase_locality: float = 0.0,
    word_locality: float = 0.0,
    word_margin: float = 1.0,
    phrase_readout: float = 0.0,
) -> tuple[CLIPModel, CLIPTokenizer, dict]:
    """Train the toy CLIP contrastively on ``SceneStream(seed)`` batches and save it (with its tokenizer and a
    ``CLIPProcessor`` config, so ``clip_score`` can load the folder) into ``out_dir`` (``None``: don't save).

    ``hard_negatives``: per entry, every caption's swap negative (``hard_negative``) of that head (``"any"``:
    a random one) joins the image → text candidates; ``()`` for none. In-batch negatives alone almost never
    differ from a caption in one word, and a CLIP trained on them alone learned to tell colours apart but not a
    circle from a square (shape swap accuracy 0.76; the denoiser trained on its text tower drew the two alike);
    one random-head negative per caption moved shape only to 0.79 in 800 steps, hence a second, of shape.
    ``init``: a trained toy CLIP to continue from (a fresh
    optimiser and schedule), with this function's tokenizer.
    ``phrase_locality``, ``word_locality``, ``word_margin``, ``phrase_readout``: the token-level terms added to
    the contrastive loss (``TokenTerms``; all off by default).

    With ``eval_every``, every that many steps (and at the end) the log records the caption → image top-1
    accuracy on 128 fresh full-caption scenes and the per-head swap accuracy (``swap_accuracy``). Returns
    (clip, tokenizer, log).
    """
    cfg = _config("clip", steps=steps, batch_size=batch_size, lr=lr, seed=seed, warmup=warmup)
    cfg.time_budget_s, cfg.device = time_budget_s, device
    cfg.checkpoint_dir = None if checkpoint_dir is None else str(checkpoint_dir)
    cfg.extra = {"hard_negatives": list(hard_negatives), "continued": init is not None}
    terms = TokenTerms(phrase_locality, word_locality, word_margin, phrase_readout, offset=1, causal=True)
    cfg.extra |= terms.settings()
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tokenizer = build_scene_clip_tokenizer()
    lengths = check_caption_lengths(tokenizer)
    torch.manual_seed(cfg.seed)
    if init is not None and init.config.text_config.vocab_size != len(tokenizer):
        raise ErasekitError("the CLIP to continue from has another vocabulary than the v2 tokenizer's")
    clip = (init if init is not None else build_toy_clip(len(tokenizer), tokenizer.pad_token_id, size)).to(dev)
    clip.train()
    stream = scenes.SceneStream(cfg.seed, device=dev, supersample=2)
    negatives_rng = random.Random(cfg.seed + 11)
    if eval_every:
        eval_images, eval_captions, ceiling = full_caption_batch(128, seed=cfg.seed + 10_000, device=dev)
    history = []

    def evaluate(step):
        acc = evaluate_clip(clip, tokenizer, eval_images, eval_captions, seed=cfg.seed)
        acc |= phrase_cosines(clip, tokenizer, eval_captions)
        history.append({"step": step, **acc})
        return acc

    heads = terms.heads(clip.config.text_config.hidden_size, len(tokenizer)).to(dev)

    def loss_fn(step):
        if eval_every and step % eval_every == 0:
            evaluate(step)
        with torch.no_grad():  # CLIP's cap on the temperature, on the parameter itself
            clip.logit_scale.clamp_(0.0, LOG_SCALE_MAX)
        images, captions, _ = stream.batch(cfg.batch_size)
        img = image_features(clip, images)
        ids = clip_input_ids(tokenizer, captions, dev)
        encoded = clip.text_model(input_ids=ids)
        text = F.normalize(clip.text_projection(encoded.pooler_output), dim=-1)
        loss = _loss_with_swaps(
            img,
            text,
            captions,
            lambda c: text_features(clip, tokenizer, c),
            hard_negatives,
            negatives_rng,
            clip.logit_scale,
        )
        logs = {"loss": loss, "scale": clip.logit_scale.exp()}
        term_loss, term_logs = terms.loss(
            encoded.last_hidden_state, ids, captions, lambda t: clip_states(clip, tokenizer, t), heads, tokenizer
        )
        return loss + term_loss, logs | term_logs

    gens = {"rng": stream.rng, "gen": stream.gen, "negatives": negatives_rng}
    trained = nn.ModuleList([clip, heads]) if len(heads) else clip
    log = _run(cfg, trained, loss_fn, "toy-clip", generators=gens)
    with torch.no_grad():
        clip.logit_scale.clamp_(0.0, LOG_SCALE_MAX)
    if eval_every:
        log["final_eval"] = evaluate(log["steps_done"])
        log["eval"] = history
        log["eval_ceiling"] = ceiling
    log["caption_lengths"] = lengths
    clip.eval().cpu()
    if out_dir is not None:
        save_toy_clip(clip, tokenizer, out_dir)
        _write_log(Path(out_dir), "clip", log)
    return clip, tokenizer, log


def save_toy_clip(clip: CLIPModel, tokenizer: CLIPTokenizer, out_dir: str | Path) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clip.save_pretrained(out_dir, safe_serialization=True)
    from transformers import CLIPImageProcessor  # here: without torchvision, importing it warns

    size = clip.config.vision_config.image_size
    image_processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out_dir)


def _require(folder: str | Path, files: tuple[str, ...], what: str, how: str) -> Path:
    folder = Path(folder).expanduser()
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise ModelNotFoundError(f"no {what} at {folder} (missing {', '.join(missing)}); {how}")
    return folder


def load_toy_clip(folder: str | Path) -> tuple[CLIPModel, CLIPTokenizer]:
    """The toy CLIP and its tokenizer saved by ``train_toy_clip``."""
    folder = _require(
        folder,
        ("config.json", "model.safetensors", "tokenizer_config.json"),
        "toy CLIP",
        "train one with train_toy_clip",
    )
    clip = CLIPModel.from_pretrained(folder, local_files_only=True, use_safetensors=True).eval()
    return clip, CLIPTokenizer.from_pretrained(folder, local_files_only=True)


# --------------------------------------------------------------------------------------------------- T5


class PooledProjection(nn.Module):
    """T5 states mean-pooled over a caption's tokens (not the padding), projected to the CLIP's embedding space;
    ``logit_scale`` is the objective's own learned temperature (log)."""

    def __init__(self, d_model: int, projection_dim: int):
        super().__init__()
        self.proj = nn.Linear(d_model, projection_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = mask.to(hidden.dtype).unsqueeze(-1)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return F.normalize(self.proj(pooled), dim=-1)


def build_toy_t5(vocab_size: int, size: str = "toy") -> T5EncoderModel:
    return arch.build_t5(vocab_size, size=size)


def t5_states(t5: T5EncoderModel, tokenizer, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(final states, input ids, attention mask) of ``texts`` padded to the tokenizer's length (48), the encoder
    run without an attention mask, as ``FluxPipeline`` calls it."""
    enc = tokenizer(
        list(texts), padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    )
    ids, mask = enc.input_ids.to(t5.device), enc.attention_mask.to(t5.device)
    return t5(ids)[0], ids, mask


def t5_features(t5: T5EncoderModel, head: PooledProjection, tokenizer, captions: list[str]) -> torch.Tensor:
    """L2-normalised projected caption embeddings; the pooling skips the padding."""
    hidden, _, mask = t5_states(t5, tokenizer, captions)
    return head(hidden, mask)


def train_toy_t5(
    clip: CLIPModel,
    out_dir: str | Path | None,
    steps: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    device: str | None = None,
    time_budget_s: float | None = None,
    size: str = "toy",
    warmup: int | None = None,
    eval_every: int | None = None,
    checkpoint_dir: str | Path | None = None,
    hard_negatives: tuple[str, ...] = ("any", "shape"),
    init: tuple[T5EncoderModel, PooledProjection] | None = None,
    phrase_locality: float = 0.0,
    word_locality: float = 0.0,
    word_margin: float = 1.0,
    phrase_readout: float = 0.0,
) -> tuple[T5EncoderModel, T5TokenizerFast, PooledProjection, dict]:
    """Train the toy T5 encoder and its pooled projection against the frozen CLIP's image embeddings (symmetric
    InfoNCE, with ``train_toy_clip``'s swap negatives) on ``SceneStream(seed)`` batches; save the encoder,
    tokenizer and head into ``out_dir``. ``init``: a trained (encoder, head) to continue from. The token-level
    terms are ``train_toy_clip``'s (``TokenTerms``), for a bidirectional tower: the read-out labels every word
    with its whole phrase."""
    cfg = _config("t5", steps=steps, batch_size=batch_size, lr=lr, seed=seed, warmup=warmup)
    cfg.time_budget_s, cfg.device = time_budget_s, device
    cfg.checkpoint_dir = None if checkpoint_dir is None else str(checkpoint_dir)
    cfg.extra = {"hard_negatives": list(hard_negatives)} | ({"continued": True} if init is not None else {})
    terms = TokenTerms(phrase_locality, word_locality, word_margin, phrase_readout, offset=0, causal=False)
    cfg.extra |= terms.settings()
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tokenizer = build_scene_t5_tokenizer()
    lengths = check_caption_lengths(t5_tokenizer=tokenizer)
    torch.manual_seed(cfg.seed)
    if init is not None and init[0].config.vocab_size != len(tokenizer):
        raise ErasekitError("the T5 encoder to continue from has another vocabulary than the v2 tokenizer's")
    t5, head = init if init is not None else (build_toy_t5(len(tokenizer), size), None)
    t5 = t5.to(dev).train()
    head = head if head is not None else PooledProjection(t5.config.d_model, clip.config.projection_dim)
    head = head.to(dev).train()
    heads = terms.heads(t5.config.d_model, len(tokenizer)).to(dev)

    def states_of(texts):
        return t5_states(t5, tokenizer, texts)[0]

    clip = clip.to(dev).eval().requires_grad_(False)
    stream = scenes.SceneStream(cfg.seed, device=dev, supersample=2)
    negatives_rng = random.Random(cfg.seed + 11)
    if eval_every:
        eval_images, eval_captions, ceiling = full_caption_batch(128, seed=cfg.seed + 10_000, device=dev)
        with torch.no_grad():
            eval_image_embeds = image_features(clip, eval_images)
    history = []

    def text_fn(captions):
        return t5_features(t5, head, tokenizer, captions)

    @torch.no_grad()
    def evaluate(step):
        t5.eval(), head.eval()
        acc = retrieval_accuracy(eval_image_embeds, text_fn(eval_captions))
        swaps = swap_accuracy_of(eval_image_embeds, text_fn, eval_captions, seed=cfg.seed)
        acc |= {f"swap_{h}": v for h, v in swaps.items()}
        acc |= slot_cosines(states_of, eval_captions, offset=0)
        t5.train(), head.train()
        history.append({"step": step, **acc})
        return acc

    def loss_fn(step):
        if eval_every and step % eval_every == 0:
            evaluate(step)
        with torch.no_grad():
            head.logit_scale.clamp_(0.0, LOG_SCALE_MAX)
            images, captions, _ = stream.batch(cfg.batch_size)
            img = image_features(clip, images)
        hidden, ids, mask = t5_states(t5, tokenizer, captions)
        txt = head(hidden, mask)
        loss = _loss_with_swaps(img, txt, captions, text_fn, hard_negatives, negatives_rng, head.logit_scale)
        term_loss, term_logs = terms.loss(hidden, ids, captions, states_of, heads, tokenizer)
        return loss + term_loss, {"loss": loss, "scale": head.logit_scale.exp()} | term_logs

    gens = {"rng": stream.rng, "gen": stream.gen, "negatives": negatives_rng}
    trained = nn.ModuleList([t5, head, heads]) if len(heads) else nn.ModuleList([t5, head])
    log = _run(cfg, trained, loss_fn, "toy-t5", generators=gens)
    with torch.no_grad():
        head.logit_scale.clamp_(0.0, LOG_SCALE_MAX)
    if eval_every:
        log["final_eval"] = evaluate(log["steps_done"])
        log["eval"] = history
        log["eval_ceiling"] = ceiling
    log["caption_lengths"] = lengths
    t5.eval().cpu()
    head.eval().cpu()
    if out_dir is not None:
        save_toy_t5(t5, tokenizer, head, out_dir)
        _write_log(Path(out_dir), "t5", log)
    return t5, tokenizer, head, log


def save_toy_t5(t5: T5EncoderModel, tokenizer, head: PooledProjection, out_dir: str | Path) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t5.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    save_file({k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}, str(out_dir / HEAD_FILE))


def load_toy_t5(folder: str | Path) -> tuple[T5EncoderModel, T5TokenizerFast, PooledProjection]:
    """The toy T5 encoder, its tokenizer and pooled projection saved by ``train_toy_t5``."""
    folder = _require(
        folder, ("config.json", "model.safetensors", HEAD_FILE), "toy T5 encoder", "train one with train_toy_t5"
    )
    t5 = T5EncoderModel.from_pretrained(folder, local_files_only=True, use_safetensors=True).eval()
    tokenizer = T5TokenizerFast.from_pretrained(folder, local_files_only=True)
    state = load_file(str(folder / HEAD_FILE))
    out_dim, d_model = state["proj.weight"].shape
    head = PooledProjection(d_model, out_dim)
    head.load_state_dict(state, strict=True)
    return t5, tokenizer, head.eval()
