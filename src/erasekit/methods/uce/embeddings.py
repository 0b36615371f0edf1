"""Which text vectors enter UCE's system: the concepts' token positions, their pairing with the guide's, and the
embeddings read at those positions.

A concept is encoded alone, as the backbone encodes any prompt (same tokenizer, length and padding), and its
*phrase tokens* are the positions of that encoding whose token is not a special one: not the start, end or
unknown token. A concept with no phrase token is "absent" to the model — for CLIP's byte-level BPE every
non-blank character becomes some token, so this happens when the text is made only of special-token strings
(``<|endoftext|>``) or of characters the tokenizer maps to its unknown token (T5's SentencePiece, which has no
byte fallback) — and is refused, as is a concept longer than the text encoder's window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ...arguments import InvalidConceptError


@dataclass
class Vectors:
    """The rows of UCE's system for one group of projections (all reading the same text vectors).

    Attributes:
        erase: ``(nₑ, d)`` erased vectors ``c_e``.
        guide: ``(nₑ, d)`` the guide vector paired with each erased one (``v*_e = W₀ g_e``).
        preserve: ``(nₚ, d)`` preserved vectors ``c_p``.
        from_contexts: how many of the erased rows (the last ones) were read in context prompts.
    """

    erase: torch.Tensor
    guide: torch.Tensor
    preserve: torch.Tensor
    from_contexts: int = 0


def special_ids(tokenizer) -> set[int]:
    """Ids that carry no text of their own: start, end and unknown tokens (padding never falls inside a phrase)."""
    ids = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id}
    return {i for i in ids if i is not None}


def phrase_positions(tokenizer, text: str, max_length: int, what: str = "concept") -> list[int]:
    """Positions of ``text``'s own tokens in its encoding (as ``Backbone.encode`` lays it out), special ones left out.

    Raises:
        InvalidConceptError: ``text`` has no token of its own, or does not fit in ``max_length`` tokens.
    """
    ids = tokenizer(text).input_ids
    if len(ids) > max_length:
        raise InvalidConceptError(
            f"the {what} {text!r} is {len(ids)} tokens long, special tokens included; the text encoder reads "
            f"{max_length}: shorten it"
        )
    special = special_ids(tokenizer)
    positions = [i for i, token in enumerate(ids) if token not in special]
    if not positions:
        raise InvalidConceptError(
            f"the {what} {text!r} has no token of its own for this model's tokenizer (it becomes only "
            f"{', '.join(sorted(set(tokenizer.convert_ids_to_tokens(ids))))}): UCE edits the projections of a "
            "concept's tokens, so it needs a concept written in words the tokenizer knows"
        )
    return positions


def empty_guide_position(tokenizer, max_length: int) -> int:
    """The slot the released code reads for the empty prompt (``attention_mask.sum() - 2``): the start token where
    the tokenizer has one (CLIP), else index −1, the last padding slot (T5)."""
    ids = tokenizer("").input_ids
    if tokenizer.bos_token_id is not None and ids and ids[0] == tokenizer.bos_token_id:
        return 0
    return max_length - 1


def paired_positions(erase: Sequence[int], guide: Sequence[int], tokens: str) -> list[tuple[int, int]]:
    """(erased position, guide position) pairs: counted from the end of both phrases (the last with the last, the
    one before with the one before, ...), erased tokens beyond the guide's length paired with the guide's first.
    ``tokens="last"`` keeps only the last pair."""
    if not erase or not guide:
        raise ValueError("both phrases need at least one position")
    erase = list(erase[-1:] if tokens == "last" else erase)
    k = len(guide)
    return [(e, guide[max(0, k - len(erase) + i)]) for i, e in enumerate(erase)]


def occurrences(tokenizer, concept: str, prompt: str) -> list[list[int]]:
    """The positions of each occurrence of ``concept``'s own tokens (special ones left out) inside ``prompt``'s
    encoding, as whole runs of token ids; none when the prompt does not contain the concept's tokens."""
    special = special_ids(tokenizer)
    word = [t for t in tokenizer(concept).input_ids if t not in special]
    ids = tokenizer(prompt).input_ids
    n = len(word)
    return [list(range(i, i + n)) for i in range(len(ids) - n + 1) if n and ids[i : i + n] == word]


def _encode(backbone, texts: Sequence[str], batch_size: int = 64):
    parts = [backbone.encode(list(texts[i : i + batch_size])) for i in range(0, len(texts), batch_size)]
    embeds = torch.cat([p.embeds for p in parts])
    pooled = None if parts[0].pooled is None else torch.cat([p.pooled for p in parts])
    return embeds, pooled


@torch.no_grad()
def concept_vectors(
    backbone,
    targets: Sequence[str],
    guide: str | None,
    preserve: Sequence[str],
    tokens: str,
    contexts: Sequence[str] = (),
) -> dict[str, Vectors]:
    """The system's rows for the per-token text embeddings (``"tokens"``) and, where the backbone has a pooled
    text embedding (FLUX), for it (``"pooled"``: one vector per text).

    Per token: each target's phrase tokens (or its last) paired with the guide's (``paired_positions``; the
    empty guide's slot is ``empty_guide_position``); each preserved text's phrase tokens (or its last). Each
    occurrence of a target's tokens in a ``contexts`` prompt (``occurrences``) adds erased rows paired the same way.
    """
    tokenizer, length = backbone.tokenizer, backbone.text_length
    target_pos = [phrase_positions(tokenizer, t, length, "concept") for t in targets]
    guide_pos = (
        phrase_positions(tokenizer, guide, length, "anchor (guide concept)")
        if guide
        else [empty_guide_position(tokenizer, length)]
    )
    preserve_pos = [phrase_positions(tokenizer, p, length, "preserved concept") for p in preserve]

    # An occurrence past the encoder's window is cut off by truncation, so it is not read.
    found = [
        (k, pos)
        for k, context in enumerate(contexts)
        for target in targets
        for pos in occurrences(tokenizer, target, context)
        if pos[-1] < length
    ]
    texts = [*targets, guide or "", *preserve]
    embeds, pooled = _encode(backbone, texts)
    embeds = embeds.double().cpu()
    g = embeds[len(targets)]
    erase_rows, guide_rows = [], []
    for i, positions in enumerate(target_pos):
        for e, q in paired_positions(positions, guide_pos, tokens):
            erase_rows.append(embeds[i, e])
            guide_rows.append(g[q])
    lone = len(erase_rows)
    if found:
        context_embeds = _encode(backbone, list(contexts))[0].double().cpu()
        for k, positions in found:
            for e, q in paired_positions(positions, guide_pos, tokens):
                erase_rows.append(context_embeds[k, e])
                guide_rows.append(g[q])
    preserve_rows = [
        embeds[len(targets) + 1 + j, q]
        for j, positions in enumerate(preserve_pos)
        for q in (positions[-1:] if tokens == "last" else positions)
    ]
    d = embeds.shape[-1]
    out = {
        "tokens": Vectors(
            torch.stack(erase_rows),
            torch.stack(guide_rows),
            torch.stack(preserve_rows) if preserve_rows else torch.zeros(0, d, dtype=torch.float64),
            len(erase_rows) - lone,
        )
    }
    if pooled is not None:
        pooled = pooled.double().cpu()
        n = len(targets)
        out["pooled"] = Vectors(pooled[:n], pooled[n : n + 1].expand(n, -1), pooled[n + 1 :])
    return out
