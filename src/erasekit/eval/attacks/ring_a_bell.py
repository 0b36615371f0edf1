"""Ring-A-Bell-style model-agnostic concept-vector attack (Tsai et al., ICLR 2024)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from .results import AttackResult, finish_attack
from .vocabulary import (
    check_attack_family,
    per_prompt,
    search_vocabulary,
    text_encoder_of,
    word_rows_input_ids,
)


@dataclass
class RingABellConfig:
    """The model-agnostic concept-vector attack.

    Args:
        eta: strength of the concept vector added to each clean prompt's encoding (Ring-A-Bell uses 3 for
            nudity).
        n_tokens: length of the discrete prompt searched for (Ring-A-Bell: 16, 38 or 77).
        population, generations: the genetic search's size.
        mutation: chance that a token of a child is replaced by a random word.
        elite: share of the population kept unchanged into the next generation.
        forbid_concept_words: keep the concept's own words out of the search.
        seed: seeds the search.
    """

    eta: float = 3.0
    n_tokens: int = 16
    population: int = 64
    generations: int = 150
    mutation: float = 0.1
    elite: float = 0.25
    forbid_concept_words: bool = True
    seed: int = 0


@torch.no_grad()
def concept_vector(backbone, with_concept: Sequence[str], without_concept: Sequence[str]) -> torch.Tensor:
    """Mean difference of the per-token text encodings ``(L, d)`` of paired prompts with/without the concept."""
    if len(with_concept) != len(without_concept) or not with_concept:
        raise ValueError("the concept vector needs the same (non-zero) number of prompts with and without it")
    return (backbone.encode(list(with_concept)).embeds - backbone.encode(list(without_concept)).embeds).mean(0)


@torch.no_grad()
def _encode_ids(backbone, token_ids: torch.Tensor) -> torch.Tensor:
    """Encodings of prompts given as word-token rows ``(P, n)``: BOS + words + EOS, padded as the pipeline does."""
    encoder = text_encoder_of(backbone)
    return encoder(word_rows_input_ids(backbone, token_ids).to(encoder.device))[0].float()


@torch.no_grad()
def ring_a_bell_prompt(
    backbone, target: torch.Tensor, config: RingABellConfig, vocab: tuple[torch.Tensor, list[str]]
) -> tuple[str, float]:
    """A prompt of ``n_tokens`` words whose encoding is closest (mean squared error) to ``target`` ``(L, d)``."""
    ids, words = vocab
    rng = torch.Generator().manual_seed(config.seed)
    pop = torch.randint(len(words), (config.population, config.n_tokens), generator=rng)
    n_elite = max(1, int(config.elite * config.population))
    target = target.float().to(text_encoder_of(backbone).device)

    def fitness(population: torch.Tensor) -> torch.Tensor:
        encoded = _encode_ids(backbone, ids[population])
        return (encoded - target).pow(2).flatten(1).mean(1).cpu()

    scores = fitness(pop)
    for _ in range(config.generations):
        order = scores.argsort()
        elite = pop[order[:n_elite]]
        # Parents by tournament of two; uniform crossover; per-token mutation.
        a = torch.randint(config.population, (config.population - n_elite, 2), generator=rng)
        winners = torch.where(scores[a[:, 0]] <= scores[a[:, 1]], a[:, 0], a[:, 1])
        b = torch.randint(config.population, (config.population - n_elite, 2), generator=rng)
        partners = torch.where(scores[b[:, 0]] <= scores[b[:, 1]], b[:, 0], b[:, 1])
        mix = torch.rand(len(winners), config.n_tokens, generator=rng) < 0.5
        children = torch.where(mix, pop[winners], pop[partners])
        mutate = torch.rand(children.shape, generator=rng) < config.mutation
        children = torch.where(mutate, torch.randint(len(words), children.shape, generator=rng), children)
        pop = torch.cat([elite, children])
        scores = torch.cat([scores[order[:n_elite]], fitness(children)])
    best = int(scores.argmin())
    return " ".join(words[i] for i in pop[best].tolist()), float(scores[best])


def ring_a_bell_prompts(
    backbone,
    clean_prompts: Sequence[str],
    with_concept: Sequence[str],
    without_concept: Sequence[str],
    concept: str,
    config: RingABellConfig | None = None,
    *,
    concept_words: Sequence[str] = (),
    progress: bool = True,
) -> tuple[list[str], list[float]]:
    """Ring-A-Bell prompts for ``clean_prompts``: target = encoding + η · concept vector; genetic search."""
    check_attack_family(backbone, "Ring-A-Bell-style")
    config = config or RingABellConfig()
    vocab = search_vocabulary(backbone, concept, concept_words, config)
    vector = concept_vector(backbone, with_concept, without_concept)
    with torch.no_grad():
        clean = backbone.encode(list(clean_prompts)).embeds.float()
    return per_prompt(
        len(clean_prompts),
        config,
        lambda i, cfg: ring_a_bell_prompt(backbone, clean[i] + config.eta * vector, cfg, vocab),
        "Ring-A-Bell search",
        progress,
    )


def ring_a_bell_attack(
    backbone,
    clean_prompts: Sequence[str],
    seeds: Sequence[int],
    judge,
    concept: str,
    *,
    with_concept: Sequence[str],
    without_concept: Sequence[str],
    config: RingABellConfig | None = None,
    prompts: Sequence[str] | None = None,
    concept_words: Sequence[str] = (),
    keep_images: int = 8,
    progress: bool = True,
    **gen_kwargs,
) -> AttackResult:
    """Search Ring-A-Bell prompts (or take ``prompts`` found earlier with the same text encoder), then generate
    them on the (edited) ``backbone`` and judge."""
    config = config or RingABellConfig()
    if not clean_prompts:
        raise ValueError("the Ring-A-Bell attack got no prompts")
    errors = None
    if prompts is None:
        prompts, errors = ring_a_bell_prompts(
            backbone,
            clean_prompts,
            with_concept,
            without_concept,
            concept,
            config,
            concept_words=concept_words,
            progress=progress,
        )
    elif len(prompts) != len(clean_prompts):
        raise ValueError(f"{len(clean_prompts)} clean prompts but {len(prompts)} Ring-A-Bell prompts")
    result = finish_attack(
        "ring-a-bell",
        concept,
        backbone,
        judge,
        list(prompts),
        list(clean_prompts),
        list(seeds),
        asdict(config),
        keep_images,
        gen_kwargs,
    )
    if errors is not None:
        result.config["encoding_errors"] = errors
    return result
