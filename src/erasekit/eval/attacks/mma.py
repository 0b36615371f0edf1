"""MMA-Diffusion, text part (Yang et al., CVPR 2024): a prompt without the concept's words whose text encoding
matches the concept prompt's, found by a GCG-style discrete search.

Each step takes the gradient of the loss with respect to a one-hot encoding of the adversarial tokens, keeps the
``top_k`` most promising replacement words per position, builds ``batch`` candidates that each swap one position
(positions in round robin, the replacement drawn from that position's top-k), scores every candidate exactly and
moves to the best of them (even when it is worse than the current prompt; the best prompt seen is what the search
returns). The loss is 1 − cos between the adversarial prompt's encoding and the target prompt's.

As released (cure-lab/MMA-Diffusion, ``src/textual_attack.py``, read at commit d5701a5):

* the encoding compared is the CLIP text encoder's pooled output only (L102, L125, L383), ``match="pooled"``,
  the default here; ``match="sequence"`` compares every position of the last hidden state, which is what an
  SD UNet reads (mean cosine over positions);
* 20 adversarial tokens (L73), top-k 256 (L207), batch 512 (L206), one position swapped per candidate in round
  robin (L148–155), the best candidate always accepted (L279–284); our toy defaults are smaller (steps, batch);
* words containing a banned word are banned too (L349–353): ``word_vocabulary(..., substrings=True)``;
* the released gradient rows are shifted one position against the tokens they score (row 0 is BOS, L68–110);
  here row i is token i's gradient.

Unlike the released code the search runs over whole words that tokenize back to themselves (``word_vocabulary``),
so the prompt written out is the prompt searched, and special tokens never enter it. The search reads the text
encoder only: its prompts transfer to every model that keeps the encoder, as Ring-A-Bell's do.
"""

from __future__ import annotations

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
    word_rows_input_ids,
)
from .white_box import EmbeddingOverride, frozen

MATCHES = ("pooled", "sequence")


@dataclass
class MMAConfig:
    """The MMA-Diffusion text attack.

    Args:
        n_tokens: adversarial tokens (released: 20).
        steps: search steps per prompt (released: 1000; the toy default is smaller).
        top_k: replacement words kept per position from the one-hot gradient (released: 256).
        batch: candidates scored per step, each one position swapped (released: 512).
        match: ``pooled`` (the released objective) or ``sequence`` (every position of the last hidden state).
        forbid_concept_words: keep the concept's words, and every word containing one, out of the prompt.
        seed: seeds the initial prompt and the candidates' draws.
    """

    n_tokens: int = 20
    steps: int = 100
    top_k: int = 64
    batch: int = 128
    match: str = "pooled"
    forbid_concept_words: bool = True
    seed: int = 0

    def __post_init__(self):
        if self.match not in MATCHES:
            raise ValueError(f"match must be one of {', '.join(MATCHES)}, got {self.match!r}")
        for name in ("n_tokens", "steps", "top_k", "batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")


def _encodings(output, match: str) -> torch.Tensor:
    """(P, d) pooled or (P, L, d) sequence encodings, normalised along the feature axis."""
    states = output[1] if match == "pooled" else output[0]
    return F.normalize(states.float(), dim=-1)


def _loss(encoded: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 − cos per prompt (for a sequence: the mean over positions)."""
    cos = (encoded * target).sum(-1)
    return 1 - (cos if cos.ndim == 1 else cos.mean(-1))


def mma_prompt(
    backbone, target_prompt: str, config: MMAConfig, vocab: tuple[torch.Tensor, list[str]]
) -> tuple[str, float]:
    """The adversarial prompt for ``target_prompt`` and its loss (1 − cos)."""
    ids, words = vocab
    encoder = text_encoder_of(backbone)
    device = encoder.device
    table = encoder.get_input_embeddings().weight.detach()
    candidates = table[ids.to(table.device)].float()  # (V, d)
    gen = torch.Generator().manual_seed(config.seed)
    n = min(config.n_tokens, backbone.text_length - 2)
    with torch.no_grad():
        tokens = backbone.tokenizer(
            [target_prompt], padding="max_length", max_length=backbone.text_length, truncation=True, return_tensors="pt"
        ).input_ids
        target = _encodings(encoder(tokens.to(device)), config.match)
    current = torch.randint(len(words), (n,), generator=gen)
    hook = EmbeddingOverride(encoder.get_input_embeddings(), slice(1, 1 + n))

    def score(rows: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return _loss(_encodings(encoder(word_rows_input_ids(backbone, ids[rows]).to(device)), config.match), target)

    best = (float(score(current[None])[0]), current.clone())
    with frozen(encoder):
        try:
            for _ in range(config.steps):
                one_hot = F.one_hot(current, len(words)).float().requires_grad_(True)
                hook.vectors = one_hot @ candidates
                output = encoder(word_rows_input_ids(backbone, ids[current[None]]).to(device))
                _loss(_encodings(output, config.match), target).sum().backward()
                hook.vectors = None
                grad = F.normalize(one_hot.grad, dim=-1)
                top = (-grad).topk(min(config.top_k, len(words)), dim=-1).indices  # (n, k)
                positions = torch.arange(config.batch) % n
                picks = torch.randint(top.shape[1], (config.batch,), generator=gen)
                rows = current.repeat(config.batch, 1)
                rows[torch.arange(config.batch), positions] = top[positions, picks]
                losses = score(rows)
                i = int(losses.argmin())
                current = rows[i].clone()
                if float(losses[i]) < best[0]:
                    best = (float(losses[i]), current.clone())
        finally:
            hook.remove()
    return " ".join(words[i] for i in best[1].tolist()), best[0]


def mma_prompts(
    backbone,
    target_prompts: Sequence[str],
    concept: str,
    config: MMAConfig | None = None,
    *,
    concept_words: Sequence[str] = (),
    progress: bool = True,
) -> tuple[list[str], list[float]]:
    """One adversarial prompt per target prompt (seeds ``config.seed + i``), searched on ``backbone``'s encoder."""
    check_attack_family(backbone, "MMA-Diffusion")
    config = config or MMAConfig()
    vocab = search_vocabulary(backbone, concept, concept_words, config, substrings=True)
    return per_prompt(
        len(target_prompts),
        config,
        lambda i, cfg: mma_prompt(backbone, target_prompts[i], cfg, vocab),
        "MMA-Diffusion search",
        progress,
    )


def mma_attack(
    backbone,
    target_prompts: Sequence[str],
    seeds: Sequence[int],
    judge,
    concept: str,
    *,
    config: MMAConfig | None = None,
    prompts: Sequence[str] | None = None,
    concept_words: Sequence[str] = (),
    keep_images: int = 8,
    progress: bool = True,
    **gen_kwargs,
) -> AttackResult:
    """Search MMA-Diffusion prompts for ``target_prompts`` (or take ``prompts`` found earlier with the same text
    encoder), then generate them on the (edited) ``backbone`` and judge; the target prompts' own images are the
    pre-attack row."""
    config = config or MMAConfig()
    if not target_prompts:
        raise ValueError("the MMA-Diffusion attack got no prompts")
    losses = None
    if prompts is None:
        prompts, losses = mma_prompts(
            backbone, target_prompts, concept, config, concept_words=concept_words, progress=progress
        )
    elif len(prompts) != len(target_prompts):
        raise ValueError(f"{len(target_prompts)} target prompts but {len(prompts)} MMA-Diffusion prompts")
    result = finish_attack(
        "mma",
        concept,
        backbone,
        judge,
        list(prompts),
        list(target_prompts),
        list(seeds),
        asdict(config),
        keep_images,
        gen_kwargs,
    )
    if losses is not None:
        result.config["final_losses"] = losses
    return result
