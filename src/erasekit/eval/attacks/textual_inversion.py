"""Textual inversion on the erased model (Pham et al., "Circumventing Concept Erasure Methods for Text-to-Image
Generative Models", ICLR 2024): one new token embedding learned, through the *edited* pipeline, from images of
the concept (the unedited model's), with the ordinary diffusion loss; generating with it brings the concept back
when the erasure only cut the concept's words off from it.

As released (NYU-DICE-Lab/circumventing-concept-erasure, read at commit bb7034b; the scripts adapt diffusers'
``textual_inversion.py``): ε-MSE of the erased UNet at ``t ~ U{0, …, 999}`` (``esd/concept_inversion.py:950–980``),
one new embedding initialised from a generic single-token word (``train.sh:9–10``, ``esd:750–765``), AdamW
(β 0.9/0.999, weight decay 1e-2, ``esd:806–812``) at lr 5e-3 scaled by batch 4 × accumulation 4 (``esd:800–803``,
``train.sh:11–17``), 5000 steps at a constant rate, horizontal flips (``esd:547–565``); the images' captions are
object templates ("a photo of a {}") or, for I2P, the token before the prompt (``esd:599, 631``). For a negative
prompt and for SLD the loss is not the noise MSE but the edited pipeline's guided prediction with the token
matched to the unedited model's classifier-free guidance with the concept prompt (``np/concept_inversion.py:
970–1008``, ``sld/concept_inversion.py:956–1098``); we do the same through ``white_box.controlled_prediction``.
GIE's two-branch sampler has no one-step form: refused. Differences: the default captions here are the attacked
prompts themselves with the concept's word replaced by the token (``templates="source"``; the toy world's models
know no "a photo of"), ``templates="object"`` gives object templates; steps default lower for CPUs.

The learned embedding is saved as safetensors in diffusers' textual-inversion format (``{token: vector}``), with
the text encoder it belongs to in its metadata; ``loaded_embedding`` puts it into a pipeline (diffusers'
``load_textual_inversion``) for a replay and refuses an embedding of another text encoder.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

from ...atomic import atomic_path
from ...errors import InvalidArgumentError
from ...progress import progress_bar
from .results import AttackResult, finish_attack
from .vocabulary import check_attack_family, text_encoder_of
from .white_box import EmbeddingOverride, controlled_prediction, frozen, inference_controls, reference_prediction

TEMPLATES = ("source", "object")
# Captions for templates="object" (our own wording of the usual textual-inversion captions).
OBJECT_TEMPLATES = (
    "a photo of a {}",
    "a picture of a {}",
    "an image of the {}",
    "a close-up photo of a {}",
    "a rendering of a {}",
    "a good photo of the {}",
)
GENERIC_INITIALIZERS = ("object", "thing", "shape", "art")


@dataclass
class TextualInversionConfig:
    """Textual inversion on the erased model.

    Args:
        steps: optimisation steps (released: 5000).
        batch_size: images per step (released: 4 × 4 accumulated).
        lr: AdamW learning rate (released: 5e-3 × 16 = 0.08).
        weight_decay: AdamW weight decay (released: 1e-2).
        initializer: the single-token word the embedding starts from (released: a generic word); ``None``: the
            first of ``GENERIC_INITIALIZERS`` the tokenizer has as one token.
        templates: ``source`` (each attacked prompt, the concept's word replaced by the token, or the token before
            it) or ``object`` (object captions, "a photo of a <token>").
        flip: random horizontal flips of the images (released: p = 0.5).
        guidance_scale: the guidance of the guided predictions when the edit is a negative prompt or SLD.
        token: the new token's text.
        seed: seeds the draws of images, captions, timesteps and noise.
    """

    steps: int = 200
    batch_size: int = 4
    lr: float = 0.08
    weight_decay: float = 1e-2
    initializer: str | None = None
    templates: str = "source"
    flip: bool = True
    guidance_scale: float = 7.5
    token: str = "<erasekit-inverted>"
    seed: int = 0

    def __post_init__(self):
        if self.templates not in TEMPLATES:
            raise ValueError(f"templates must be one of {', '.join(TEMPLATES)}, got {self.templates!r}")
        if self.steps < 0 or self.batch_size < 1:
            raise ValueError("steps must be ≥ 0 and batch_size ≥ 1")


def encoder_fingerprint(backbone) -> dict[str, str]:
    """What identifies a text encoder for an embedding: its width, vocabulary size and a hash of its first token
    embeddings (enough to tell two encoders apart without hashing a whole 49k-row table)."""
    table = text_encoder_of(backbone).get_input_embeddings().weight.detach()
    head = table[:256].float().cpu().contiguous()
    return {
        "hidden_size": str(table.shape[1]),
        "vocab_size": str(table.shape[0]),
        "embedding_sha256": hashlib.sha256(head.numpy().tobytes()).hexdigest(),
    }


def _initializer(tokenizer, word: str | None) -> tuple[str, int]:
    for candidate in [word] if word else GENERIC_INITIALIZERS:
        ids = tokenizer(candidate, add_special_tokens=False).input_ids
        if len(ids) == 1:
            return candidate, ids[0]
        if word:
            raise InvalidArgumentError(f"the initializer {word!r} is {len(ids)} tokens; give a single-token word")
    raise InvalidArgumentError(
        f"none of {', '.join(GENERIC_INITIALIZERS)} is a single token of this tokenizer; give initializer=..."
    )


def _around(prompt: str, concept: str) -> tuple[str, str]:
    """The words before and after the token's place in ``prompt``: the concept's word (its last word, for a
    phrase; the first occurrence), or the very start when the word is not in it (the released I2P captions)."""
    word = concept.split()[-1]
    words = prompt.split()
    if word in words:
        i = words.index(word)
        return " ".join(words[:i]), " ".join(words[i + 1 :])
    return "", prompt


def token_prompt(prompt: str, concept: str, token: str) -> str:
    """``prompt`` with the token in the concept's word's place (or before it when the word is not in it)."""
    before, after = _around(prompt, concept)
    return " ".join(part for part in (before, token, after) if part)


def _captions(prompts: Sequence[str], concept: str, config: TextualInversionConfig) -> list[tuple[str, str]]:
    """(before, after) of each caption the token is trained in."""
    if config.templates == "object":
        return [tuple(t.split("{}")) for t in OBJECT_TEMPLATES]
    return [_around(p, concept) for p in prompts]


def learn_embedding(
    backbone,
    images: torch.Tensor,
    prompts: Sequence[str],
    concept: str,
    config: TextualInversionConfig | None = None,
    reference=None,
    progress: bool = True,
) -> tuple[torch.Tensor, list[float]]:
    """The token embedding ``(d,)`` learned through the (edited) ``backbone`` from ``images`` ``(N, 3, H, W)`` of the
    concept, captioned from ``prompts`` (one per image, for ``templates="source"``), and the loss per step.
    ``reference``: the unedited model, needed when the edit is a negative prompt or SLD."""
    check_attack_family(backbone, "textual inversion")
    config = config or TextualInversionConfig()
    if len(images) == 0 or len(images) != len(prompts):
        raise ValueError(f"textual inversion needs one prompt per image: {len(images)} images, {len(prompts)} prompts")
    controls = inference_controls(backbone)
    if controls and reference is None:
        raise ValueError("with a negative prompt or SLD applied, textual inversion needs the unedited model")
    encoder = text_encoder_of(backbone)
    word, word_id = _initializer(backbone.tokenizer, config.initializer)
    vector = encoder.get_input_embeddings().weight.detach()[word_id].float().clone().requires_grad_(True)
    optimizer = torch.optim.AdamW([vector], lr=config.lr, betas=(0.9, 0.999), weight_decay=config.weight_decay)
    rng = random.Random(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    device = backbone.device
    with torch.no_grad():
        pixels = images.to(device, backbone.dtype)
        latents = {False: backbone.encode_images(pixels, mode=True)}
        if config.flip:
            latents[True] = backbone.encode_images(pixels.flip(-1), mode=True)
    captions = _captions(prompts, concept, config)
    sources = list(prompts)
    losses: list[float] = []
    embedding = encoder.get_input_embeddings()
    with (
        frozen(backbone.denoiser, encoder),
        progress_bar("textual inversion", config.steps, disable=not progress) as bar,
    ):
        for _ in range(config.steps):
            optimizer.zero_grad()
            total = 0.0
            for _ in range(config.batch_size):
                i = rng.randrange(len(images))
                before, after = captions[i] if config.templates == "source" else rng.choice(captions)
                before, after = before.strip(), after.strip()
                caption = " ".join(part for part in (before, word, after) if part)
                x0 = latents[config.flip and rng.random() < 0.5][i : i + 1]
                t = torch.randint(backbone.num_train_timesteps, (1,), generator=gen).to(device)
                noise = torch.randn(x0.shape, generator=gen).to(x0)
                noisy = backbone.add_noise(x0, noise, t)
                position = 1 + (len(backbone.tokenizer(before, add_special_tokens=False).input_ids) if before else 0)
                hook = EmbeddingOverride(embedding, slice(position, position + 1))
                hook.vectors = vector[None]
                try:
                    cond = backbone.encode([caption])
                    if controls:
                        want = reference_prediction(
                            reference, noisy, t, reference.encode([sources[i]]), config.guidance_scale, controls
                        )
                        got = controlled_prediction(backbone, noisy, t, cond, config.guidance_scale, controls)
                    else:
                        want = backbone.training_target(x0, noise, t)
                        got = backbone.predict(noisy, t, cond)
                finally:
                    hook.remove()
                loss = F.mse_loss(got.float(), want.float()) / config.batch_size
                loss.backward()
                total += float(loss.detach())
            optimizer.step()
            losses.append(total)
            if bar is not None:
                bar.advance()
    return vector.detach().cpu(), losses


def save_embedding(path: str | Path, token: str, vector: torch.Tensor, backbone, concept: str) -> Path:
    """The embedding as diffusers' textual-inversion safetensors (``{token: vector}``), the text encoder it was
    learned for and the concept in its metadata."""
    path = Path(path)
    metadata = encoder_fingerprint(backbone) | {"token": token, "concept": concept, "format": "erasekit-ti-1"}
    with atomic_path(path) as tmp:
        save_file({token: vector.contiguous()}, str(tmp), metadata=metadata)
    return path


def read_embedding(path: str | Path) -> tuple[str, torch.Tensor, dict[str, str]]:
    """``(token, vector, metadata)`` of an embedding saved by ``save_embedding``."""
    path = Path(path)
    if not path.is_file():
        raise InvalidArgumentError(f"no embedding file at {path}")
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
        keys = list(f.keys())
        if len(keys) != 1:
            raise InvalidArgumentError(f"{path} holds {len(keys)} tensors; a textual-inversion embedding holds one")
        return keys[0], f.get_tensor(keys[0]), metadata


@contextmanager
def loaded_embedding(backbone, path: str | Path) -> Iterator[str]:
    """The embedding at ``path`` loaded into ``backbone``'s pipeline for the block (its token yielded), then
    unloaded; an embedding learned for another text encoder is refused."""
    token, vector, metadata = read_embedding(path)
    mine = encoder_fingerprint(backbone)
    if vector.ndim != 1 or vector.shape[0] != int(mine["hidden_size"]):
        raise InvalidArgumentError(
            f"{path}: an embedding of width {tuple(vector.shape)} for a text encoder of width {mine['hidden_size']}"
        )
    theirs = {k: metadata.get(k) for k in mine}
    if any(v is not None for v in theirs.values()) and theirs != mine:
        raise InvalidArgumentError(
            f"{path} was learned for another text encoder ({json.dumps(theirs)}); this model's is {json.dumps(mine)}"
        )
    pipeline = backbone.pipeline
    pipeline.load_textual_inversion({token: vector.to(backbone.dtype)}, token=token)
    try:
        yield token
    finally:
        pipeline.unload_textual_inversion(token)


def textual_inversion_attack(
    backbone,
    reference,
    prompts: Sequence[str],
    seeds: Sequence[int],
    target_images: torch.Tensor,
    judge,
    concept: str,
    config: TextualInversionConfig | None = None,
    *,
    keep_images: int = 8,
    progress: bool = True,
    **gen_kwargs,
) -> AttackResult:
    """Learn the token from ``target_images`` (the unedited model's images of ``prompts``) through the edited
    ``backbone``, then generate each prompt with the concept's word replaced by the token, and judge. The result's
    ``embedding`` holds the token and vector (``save_embedding`` writes it)."""
    config = config or TextualInversionConfig()
    if not prompts:
        raise ValueError("the textual-inversion attack got no prompts")
    vector, losses = learn_embedding(
        backbone, target_images, prompts, concept, config, reference=reference, progress=progress
    )
    attacked = [token_prompt(p, concept, config.token) for p in prompts]
    backbone.pipeline.load_textual_inversion({config.token: vector.to(backbone.dtype)}, token=config.token)
    try:
        result = finish_attack(
            "textual-inversion",
            concept,
            backbone,
            judge,
            attacked,
            list(prompts),
            list(seeds),
            asdict(config) | {"controls": sorted(inference_controls(backbone))},
            keep_images,
            gen_kwargs,
        )
    finally:
        backbone.pipeline.unload_textual_inversion(config.token)
    result.config["losses_first_last"] = [losses[0], losses[-1]] if losses else []
    result.embedding = {"token": config.token, "vector": vector}
    return result
