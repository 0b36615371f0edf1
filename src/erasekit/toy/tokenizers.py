"""Small tokenizers for the toy pipelines, built offline from the world's vocabulary.

The CLIP tokenizer keeps CLIP's byte-level BPE scheme (so any text tokenizes, unknown words fall back to
characters) but with a vocabulary of a few hundred tokens in which every word of the toy world is one token.
The T5 tokenizer is a Unigram model with the same words as pieces, which is what a ``FluxPipeline`` expects.
"""

from __future__ import annotations

import re
from functools import lru_cache

from transformers import CLIPTokenizer, T5TokenizerFast

from .world import vocabulary

MODEL_MAX_LENGTH = 77
T5_MAX_LENGTH = 32
_BOS, _EOS = "<|startoftext|>", "<|endoftext|>"


@lru_cache
def _bytes_to_unicode() -> dict[int, str]:
    # CLIP's reversible byte -> printable character table.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def _bpe(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    symbols = list(word[:-1]) + [word[-1] + "</w>"]
    while len(symbols) > 1:
        pairs = {(a, b) for a, b in zip(symbols, symbols[1:])}
        best = min(pairs, key=lambda p: ranks.get(p, float("inf")))
        if best not in ranks:
            break
        merged, i = [], 0
        while i < len(symbols):
            if i < len(symbols) - 1 and (symbols[i], symbols[i + 1]) == best:
                merged.append(symbols[i] + symbols[i + 1])
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
    return symbols


def build_clip_bpe(words: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A vocabulary and merge list in which each of ``words`` is a single token."""
    chars = list(_bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars]
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    for word in words:
        pieces = _bpe(word, ranks)
        while len(pieces) > 1:
            pair = (pieces[0], pieces[1])
            ranks[pair] = len(merges)
            merges.append(pair)
            if pair[0] + pair[1] not in tokens:
                tokens.append(pair[0] + pair[1])
            pieces = _bpe(word, ranks)
    tokens += [_BOS, _EOS]
    return {t: i for i, t in enumerate(tokens)}, merges


def build_clip_tokenizer(words=None) -> CLIPTokenizer:
    """A CLIP tokenizer in which each of ``words`` (default: the v1 toy world's) is a single token."""
    words = [w for w in (vocabulary() if words is None else words) if re.fullmatch(r"[a-z]+", w)]
    vocab, merges = build_clip_bpe(words)
    return CLIPTokenizer(
        vocab=vocab,
        merges=merges,
        model_max_length=MODEL_MAX_LENGTH,
        bos_token=_BOS,
        eos_token=_EOS,
        unk_token=_EOS,
        pad_token=_EOS,
    )


def build_t5_tokenizer(words=None, size: int | None = None, max_length: int = T5_MAX_LENGTH) -> T5TokenizerFast:
    """A Unigram T5 tokenizer whose pieces are ``words`` (default: the toy world's) plus single characters; with
    ``size``, padded with filler pieces (never produced) to that many ids, e.g. T5's 32128 for real-width models."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    for w in vocabulary() if words is None else words:
        # With and without the word-start marker: words after a hyphen ("five-pointed") start mid-word.
        pieces += [("\u2581" + w, -1.0), (w, -2.0)]
    for c in "abcdefghijklmnopqrstuvwxyz0123456789-,.'!?":
        pieces += [("\u2581" + c, -8.0), (c, -9.0)]
    pieces.append(("\u2581", -10.0))
    seen, unique = set(), []
    for p in pieces:
        if p[0] not in seen:
            seen.add(p[0])
            unique.append(p)
    if size is not None:
        unique += [(f"<filler{i}>", -100.0) for i in range(size - len(unique))]
    return T5TokenizerFast(vocab=unique, extra_ids=0, model_max_length=max_length)
