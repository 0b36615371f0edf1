"""UnlearnDiffAtk-style white-box prompt attack (Zhang et al., ECCV 2024)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from .results import AttackResult, finish_attack
from .vocabulary import (
    check_attack_family,
    per_prompt,
    search_vocabulary,
    text_encoder_of,
)
from .white_box import EmbeddingOverride, diffusion_loss, frozen


@dataclass
class UnlearnDiffAtkConfig:
    """The white-box prompt attack.

    Args:
        n_tokens: adversarial tokens prepended to the prompt (UnlearnDiffAtk prepends 5).
        steps: optimisation steps per prompt.
        lr: Adam learning rate on the continuous token vectors.
        n_timesteps: (timestep, noise) pairs in the diffusion loss; fixed per prompt, so the objective is
            the same function at every step and the best tokens can be picked by it.
        forbid_concept_words: keep the concept's own words out of the search.
        seed: seeds the initial tokens and the loss's noise.
    """

    n_tokens: int = 5
    steps: int = 40
    lr: float = 0.01
    n_timesteps: int = 8
    forbid_concept_words: bool = True
    seed: int = 0


def unlearndiffatk_prompt(
    backbone,
    prompt: str,
    target_image: torch.Tensor,
    config: UnlearnDiffAtkConfig,
    vocab: tuple[torch.Tensor, list[str]],
) -> tuple[str, float]:
    """One prompt's attack: ``n_tokens`` words to prepend to ``prompt``, and the loss they reach.

    ``target_image``: ``(3, H, W)`` in [0, 1], an image that shows the concept (the unedited model's).
    """
    ids, words = vocab
    encoder = text_encoder_of(backbone)
    table = encoder.get_input_embeddings().weight.detach()
    candidates = table[ids.to(table.device)].float()  # (V, d)
    gen = torch.Generator().manual_seed(config.seed)
    start = torch.randint(len(words), (config.n_tokens,), generator=gen)
    placeholder = " ".join(words[i] for i in start.tolist())
    # The placeholder words occupy positions 1..n (after BOS) because each is a single token.
    hook = EmbeddingOverride(encoder.get_input_embeddings(), slice(1, 1 + config.n_tokens))
    vectors = candidates[start].clone().requires_grad_(True)
    optimizer = torch.optim.Adam([vectors], lr=config.lr)
    with torch.no_grad():
        latents = backbone.encode_images(target_image[None].to(backbone.device, backbone.dtype), mode=True)
    t = torch.linspace(0, backbone.num_train_timesteps - 1, config.n_timesteps).round().long().to(backbone.device)
    noise = torch.randn((config.n_timesteps, *latents.shape[1:]), generator=gen).to(latents)
    text = f"{placeholder} {prompt}"
    best = (math.inf, start.clone())
    with frozen(backbone.denoiser, encoder):
        try:
            for _ in range(config.steps + 1):
                nearest = torch.cdist(vectors.detach(), candidates).argmin(dim=1)
                # Straight-through: the forward pass sees the nearest words, the gradient moves the vectors.
                hook.vectors = vectors + (candidates[nearest] - vectors).detach()
                loss = diffusion_loss(backbone, latents, backbone.encode([text]), t, noise)
                if loss.item() < best[0]:
                    best = (loss.item(), nearest.clone())
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        finally:
            hook.remove()
    adversarial = " ".join(words[i] for i in best[1].tolist())
    return f"{adversarial} {prompt}", best[0]


def unlearndiffatk_attack(
    backbone,
    prompts: Sequence[str],
    seeds: Sequence[int],
    target_images: torch.Tensor,
    judge,
    concept: str,
    config: UnlearnDiffAtkConfig | None = None,
    *,
    concept_words: Sequence[str] = (),
    keep_images: int = 8,
    progress: bool = True,
    **gen_kwargs,
) -> AttackResult:
    """Attack each prompt against the (edited) ``backbone``, then generate and judge the attacked prompts.

    Args:
        prompts, seeds: the prompts to attack and the seed of each one's image.
        target_images: ``(N, 3, H, W)``: for each prompt, an image showing the concept (the unedited model's
            image of that prompt and seed, in the paper's setting).
        concept_words: words the search may not use (with ``forbid_concept_words``); the concept by default.
    """
    check_attack_family(backbone, "UnlearnDiffAtk-style")
    config = config or UnlearnDiffAtkConfig()
    if not prompts:
        raise ValueError("the UnlearnDiffAtk attack got no prompts")
    if len(target_images) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(target_images)} target images")
    vocab = search_vocabulary(backbone, concept, concept_words, config)
    attacked, losses = per_prompt(
        len(prompts),
        config,
        lambda i, cfg: unlearndiffatk_prompt(backbone, prompts[i], target_images[i], cfg, vocab),
        "UnlearnDiffAtk attack",
        progress,
    )
    result = finish_attack(
        "unlearndiffatk",
        concept,
        backbone,
        judge,
        attacked,
        list(prompts),
        list(seeds),
        asdict(config) | {"vocabulary": len(vocab[1])},
        keep_images,
        gen_kwargs,
    )
    result.config["final_losses"] = losses
    return result
