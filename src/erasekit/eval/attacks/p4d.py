"""P4D (Chin et al., "Prompting4Debugging", ICML 2024): prompt tokens learned so that the *edited* model's noise
prediction, given them, matches the *unedited* model's for the concept prompt on the same noisy latent.

x_t is an image of the concept (the unedited model's image of the prompt) encoded and noised at a timestep drawn
uniformly each step; the loss is the MSE between the two predictions. The tokens are continuous vectors projected
to their nearest whole word by cosine similarity in the forward pass, the gradient updating the vectors
(straight-through, as PEZ does), so the prompt found is text. Two variants:

* **P4D-N**: ``n_tokens`` free tokens replace the prompt (released: 16);
* **P4D-K**: a learned token before every ``every_k`` words of the prompt (released: K = 3, so
  ``[x] w1 w2 w3 [x] w4 …``), the prompt's own words kept.

As released (joycenerd/P4D, read at commit 2cf3cda): the loss ``F.mse_loss(erase_pred, target_pred)``
(``prompt_optimization/optimize_n.py:241``), the unedited prediction conditional only (``:182, 192``), x_t from
``scheduler.add_noise`` at ``t ~ U{0, …, 999}`` (``:172–179``), AdamW lr 0.1, weight decay 0.1, 3000 iterations
(``configs/*_optmz_config.json``), cosine nearest-neighbour projection (``:68–96``), P4D-K's learned positions at
``i % (K+1) == 0`` (``optimize_k.py:39–44``). Where we differ: P4D-K interleaves whole words, not BPE tokens (so
a learned token never splits a word and the text re-tokenizes to what was optimised); the best prompt is chosen by
the loss on fixed (timestep, noise) pairs every ``eval_every`` steps, not by generating an image and comparing it
with OpenCLIP ViT-H (``optimize_n.py:258–286``); steps default lower for CPUs. For an edited model with a negative
prompt or SLD applied, the loss compares guided predictions (the released ``--filter`` mode's idea,
``optimize_n.py:202–238``), with the unedited side guided by plain classifier-free guidance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from .results import AttackResult, finish_attack
from .vocabulary import (
    check_attack_family,
    per_prompt,
    search_vocabulary,
    text_encoder_of,
)
from .white_box import EmbeddingOverride, controlled_prediction, frozen, inference_controls, reference_prediction

VARIANTS = ("n", "k")


@dataclass
class P4DConfig:
    """P4D's settings.

    Args:
        variant: ``n`` (P4D-N: free tokens only) or ``k`` (P4D-K: a learned token every ``every_k`` words).
        n_tokens: P4D-N's learned tokens (released: 16).
        every_k: P4D-K's spacing (released: 3).
        steps: optimisation steps per prompt (released: 3000; 0 scores the random start).
        lr, weight_decay: AdamW on the token vectors (released: 0.1, 0.1).
        eval_every: steps between choices of the best projected prompt (released: 50).
        select_timesteps: fixed (timestep, noise) pairs the choice is scored on.
        guidance_scale: the guidance of the guided predictions compared when the edit is a negative prompt or SLD.
        forbid_concept_words: keep the concept's own words out of the learned tokens.
        seed: seeds the initial tokens, the timesteps and the noise.
    """

    variant: str = "n"
    n_tokens: int = 16
    every_k: int = 3
    steps: int = 100
    lr: float = 0.1
    weight_decay: float = 0.1
    eval_every: int = 10
    select_timesteps: int = 8
    guidance_scale: float = 7.5
    forbid_concept_words: bool = True
    seed: int = 0

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        for name in ("n_tokens", "every_k", "eval_every", "select_timesteps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if self.steps < 0:
            raise ValueError(f"steps must be ≥ 0, got {self.steps}")


def _layout(backbone, prompt: str, config: P4DConfig) -> tuple[list[str | None], list[int]]:
    """The prompt's pieces (``None`` for a learned token, else an original word) and the learned tokens' positions
    in the encoder's input (after BOS), within the text length."""
    if config.variant == "n":
        pieces: list[str | None] = [None] * config.n_tokens
    else:
        words = prompt.split()
        pieces = []
        for i, word in enumerate(words):
            if i % config.every_k == 0:
                pieces.append(None)
            pieces.append(word)
        if len(words) % config.every_k == 0:
            pieces.append(None)  # floor(W / K) + 1 learned tokens, as released
    positions, at = [], 1
    limit = backbone.text_length - 1  # room for EOS
    kept: list[str | None] = []
    for piece in pieces:
        width = 1 if piece is None else len(backbone.tokenizer(piece, add_special_tokens=False).input_ids)
        if at + width > limit:
            break
        if piece is None:
            positions.append(at)
        kept.append(piece)
        at += width
    return kept, positions


def _text(pieces: list[str | None], words: list[str], chosen: list[int]) -> str:
    learned = iter(chosen)
    return " ".join(words[next(learned)] if piece is None else piece for piece in pieces)


def p4d_prompt(
    backbone,
    reference,
    prompt: str,
    target_image: torch.Tensor,
    config: P4DConfig,
    vocab: tuple[torch.Tensor, list[str]],
    controls: dict | None = None,
) -> tuple[str, float]:
    """One prompt's attack: the P4D prompt and its selection loss. ``target_image``: ``(3, H, W)`` in [0, 1], the
    unedited model's image of ``prompt``; ``reference``: the unedited model."""
    controls = inference_controls(backbone) if controls is None else controls
    ids, words = vocab
    encoder = text_encoder_of(backbone)
    table = encoder.get_input_embeddings().weight.detach()
    candidates = table[ids.to(table.device)].float()
    unit = F.normalize(candidates, dim=-1)
    pieces, positions = _layout(backbone, prompt, config)
    if not positions:
        raise ValueError(f"P4D has no room for a learned token in {prompt!r} at text length {backbone.text_length}")
    gen = torch.Generator().manual_seed(config.seed)
    start = torch.randint(len(words), (len(positions),), generator=gen)
    placeholder = _text(pieces, words, start.tolist())  # one token per learned piece, at ``positions``
    vectors = candidates[start].clone().requires_grad_(True)
    optimizer = torch.optim.AdamW([vectors], lr=config.lr, weight_decay=config.weight_decay)
    device = backbone.device
    with torch.no_grad():
        latents = reference.encode_images(target_image[None].to(device, backbone.dtype), mode=True)
        target_cond = reference.encode([prompt])
    total = backbone.num_train_timesteps

    def pairs(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.randint(total, (n,), generator=gen).to(device)
        noise = torch.randn((n, *latents.shape[1:]), generator=gen).to(latents)
        return t, noise

    select_t, select_noise = pairs(config.select_timesteps)
    hook = EmbeddingOverride(encoder.get_input_embeddings(), torch.tensor(positions))

    def loss_at(t, noise) -> torch.Tensor:
        noisy = backbone.add_noise(latents.expand(len(t), -1, -1, -1), noise, t)
        want = reference_prediction(reference, noisy, t, target_cond, config.guidance_scale, controls)
        got = controlled_prediction(backbone, noisy, t, backbone.encode([placeholder]), config.guidance_scale, controls)
        return F.mse_loss(got.float(), want.float())

    best = (math.inf, start.clone())
    with frozen(backbone.denoiser, encoder, reference.denoiser):
        try:
            for step in range(config.steps + 1):
                nearest = (F.normalize(vectors.detach(), dim=-1) @ unit.T).argmax(dim=1)
                if step % config.eval_every == 0 or step == config.steps:
                    hook.vectors = candidates[nearest]
                    with torch.no_grad():
                        score = float(loss_at(select_t, select_noise))
                    if score < best[0]:
                        best = (score, nearest.clone())
                if step == config.steps:
                    break
                # Straight-through: the forward pass sees the nearest words, the gradient moves the vectors.
                hook.vectors = vectors + (candidates[nearest] - vectors).detach()
                loss = loss_at(*pairs(1))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        finally:
            hook.remove()
    return _text(pieces, words, best[1].tolist()), best[0]


def p4d_attack(
    backbone,
    reference,
    prompts: Sequence[str],
    seeds: Sequence[int],
    target_images: torch.Tensor,
    judge,
    concept: str,
    config: P4DConfig | None = None,
    *,
    concept_words: Sequence[str] = (),
    keep_images: int = 8,
    progress: bool = True,
    **gen_kwargs,
) -> AttackResult:
    """P4D on each prompt against the (edited) ``backbone``, matched to ``reference`` (the unedited model), then
    generate and judge the prompts found. ``target_images``: the unedited model's image of each prompt."""
    check_attack_family(backbone, "P4D")
    config = config or P4DConfig()
    if not prompts:
        raise ValueError("the P4D attack got no prompts")
    if len(target_images) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(target_images)} target images")
    if reference is None:
        raise ValueError("the P4D attack needs the unedited model (reference) to match")
    controls = inference_controls(backbone)
    vocab = search_vocabulary(backbone, concept, concept_words, config)
    attacked, losses = per_prompt(
        len(prompts),
        config,
        lambda i, cfg: p4d_prompt(backbone, reference, prompts[i], target_images[i], cfg, vocab, controls),
        f"P4D-{config.variant.upper()} attack",
        progress,
    )
    result = finish_attack(
        f"p4d-{config.variant}",
        concept,
        backbone,
        judge,
        attacked,
        list(prompts),
        list(seeds),
        asdict(config) | {"vocabulary": len(vocab[1]), "controls": sorted(controls)},
        keep_images,
        gen_kwargs,
    )
    result.config["final_losses"] = losses
    return result
