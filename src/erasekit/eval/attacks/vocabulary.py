"""The words attacks search over, the words they may not use, and the models the white-box attacks need."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ...errors import UnsupportedModelError


def word_vocabulary(
    tokenizer, forbid: Sequence[str] = (), min_chars: int = 2, substrings: bool = False
) -> tuple[torch.Tensor, list[str]]:
    """Token ids (and their words) that are whole alphabetic words and tokenize back to exactly themselves.

    Attacks search over these so that the prompt they find, written as text, is the prompt they optimised.
    ``forbid``: words left out (by default the attacks forbid the concept's own words, so that "just say the
    word" is not what they find); with ``substrings``, also every word that contains one ("stars", "nudes").
    """
    forbidden = {w.lower() for w in forbid}

    def banned(word: str) -> bool:
        word = word.lower()
        return word in forbidden or (substrings and any(f in word for f in forbidden if f))

    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    words, ids = [], []
    # In id order: a fast tokenizer's get_vocab() comes from a hash map, in another order for every instance, and
    # the attacks draw words by their index here (an attack must find the same prompt in every process).
    for token, index in sorted(tokenizer.get_vocab().items(), key=lambda item: item[1]):
        if index in special:
            continue
        if token.endswith("</w>"):  # CLIP BPE: a word-final token
            word = token[: -len("</w>")]
        elif token.startswith("\u2581"):  # SentencePiece: a word-initial piece
            word = token[1:]
        else:
            continue
        if len(word) >= min_chars and word.isascii() and word.isalpha() and not banned(word):
            words.append(word)
            ids.append(index)
    if not words:
        raise ValueError("the tokenizer has no whole-word tokens to search over")
    encoded = tokenizer(words, add_special_tokens=False).input_ids
    keep = [i for i, (enc, index) in enumerate(zip(encoded, ids)) if list(enc) == [index]]
    if not keep:
        raise ValueError("no whole-word token of the tokenizer tokenizes back to itself")
    return torch.tensor([ids[i] for i in keep]), [words[i] for i in keep]


def forbidden_words(concept: str, concept_words: Sequence[str], enabled: bool) -> list[str]:
    """Words the searches may not use: the concept's own, and for nudity every nudity word NudeNet's users mean."""
    if not enabled:
        return []
    from ...judges import NUDITY_WORDS

    words = list(concept_words or concept.split())
    if any(w.lower() in NUDITY_WORDS for w in words):
        words += list(NUDITY_WORDS)
    return words


def check_attack_family(backbone, attack: str) -> None:
    if backbone.family != "sd":
        raise UnsupportedModelError(
            f"the {attack} attack needs a CLIP-conditioned UNet (Stable Diffusion 1.x/2.x "
            f"or toy-sd); {backbone.family} models support the replay attack only"
        )


def text_encoder_of(backbone):
    return backbone.pipeline.text_encoder


def word_rows_input_ids(backbone, token_ids: torch.Tensor) -> torch.Tensor:
    """Text-encoder input ids of prompts given as word-token rows ``(P, n)``: BOS + words + EOS, then padding to
    the pipeline's text length, as the pipeline's tokenizer call makes them."""
    tok = backbone.tokenizer
    length = backbone.text_length
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    full = torch.full((token_ids.shape[0], length), pad, dtype=torch.long)
    full[:, 0] = tok.bos_token_id
    n = min(token_ids.shape[1], length - 2)
    full[:, 1 : 1 + n] = token_ids[:, :n]
    full[:, 1 + n] = tok.eos_token_id
    return full


def search_vocabulary(backbone, concept: str, concept_words: Sequence[str], config, substrings: bool = False):
    """The words an attack with ``config`` (its ``forbid_concept_words``) searches over on ``backbone``."""
    forbid = forbidden_words(concept, concept_words, config.forbid_concept_words)
    return word_vocabulary(backbone.tokenizer, forbid=forbid, substrings=substrings)


def per_prompt(count: int, config, search, description: str, progress: bool = True) -> tuple[list[str], list[float]]:
    """``search(i, config_i)`` → ``(text, loss)`` for each of ``count`` prompts, ``config_i`` being ``config`` with
    seed ``config.seed + i`` (so each prompt's search is its own, whatever ran before it); the texts and losses."""
    from dataclasses import replace

    from ...progress import progress_bar

    texts, losses = [], []
    with progress_bar(description, count, disable=not progress) as bar:
        for i in range(count):
            text, loss = search(i, replace(config, seed=config.seed + i))
            texts.append(text)
            losses.append(loss)
            bar.advance()
    return texts, losses
