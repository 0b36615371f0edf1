"""Where the appended target tokens sit in the edited prompt (GIE §1.3).

Branch B's prompt is ``P' = P + " " + P*``. A global alignment of the token ids of P and P' tells, for every
position j of P', whether it is one of the inserted target tokens (``inserted[j]``), which position of P it
copies otherwise (``source[j]``), and which token of P* it is (``target_index[j]``, 1-based, as in the target's
own encoding ``[SOT, t1 .. tn, EOT]``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import ErasekitError


class TargetTokenError(ErasekitError, ValueError):
    """The target concept cannot be placed in the prompt (it tokenizes to nothing, or does not fit)."""


@dataclass(frozen=True)
class TokenInterval:
    """The alignment of ``P`` (plain) and ``P'`` (target appended) over the text encoder's ``length`` slots."""

    prompt: str  # P, after truncation
    edited_prompt: str  # P'
    source: tuple[int, ...]  # position of P copied at each slot of P' (-1 at inserted slots)
    inserted: tuple[bool, ...]
    target_index: tuple[int, ...]  # 1..n at inserted slots, 0 elsewhere
    truncated: bool

    @property
    def positions(self) -> list[int]:
        """Slots of P' holding the appended target tokens, in order (the interval [s+1 : e])."""
        return [j for j, flag in enumerate(self.inserted) if flag]


def align(plain: list[int], edited: list[int]) -> tuple[list[int], list[bool]]:
    """Needleman–Wunsch alignment of two id sequences (match +1, mismatch −1, gap 0).

    Returns, for each position of ``edited``, the position of ``plain`` it aligns to (-1 where it is an
    insertion) and whether it is an insertion. Ties in the traceback prefer an insertion in ``edited``, then a
    deletion from ``plain``, then the diagonal, so an appended copy of a word already in ``plain`` is the one
    flagged.
    """
    n, m = len(plain), len(edited)
    score = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            diagonal = score[i - 1][j - 1] + (1 if plain[i - 1] == edited[j - 1] else -1)
            score[i][j] = max(diagonal, score[i - 1][j], score[i][j - 1])
    source, inserted = [-1] * m, [False] * m
    i, j = n, m
    while i > 0 or j > 0:
        if j > 0 and (i == 0 or score[i][j] == score[i][j - 1]):
            inserted[j - 1] = True
            j -= 1
        elif i > 0 and (j == 0 or score[i][j] == score[i - 1][j]):
            i -= 1
        else:
            source[j - 1] = i - 1
            i, j = i - 1, j - 1
    return source, inserted


def _ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, truncation=False, add_special_tokens=True).input_ids)


def target_token_count(tokenizer, target: str) -> int:
    """Number of tokens of ``target`` without the start/end tokens; an error when there are none."""
    count = len(_ids(tokenizer, target)) - 2
    if count <= 0:
        raise TargetTokenError(f"the target concept {target!r} tokenizes to nothing; give it as words")
    return count


def token_interval(tokenizer, prompt: str, target: str, length: int | None = None) -> TokenInterval:
    """Append ``target`` to ``prompt`` and locate the inserted tokens in the ``length`` encoder slots.

    ``prompt`` is cut first (by whole tokens) so that the target always fits: if it were truncated away, nothing
    would be inhibited.
    """
    length = length or tokenizer.model_max_length
    n = target_token_count(tokenizer, target)
    if n + 2 > length:
        raise TargetTokenError(
            f"the target concept {target!r} has {n} tokens; the text encoder holds "
            f"{length - 2} besides its start and end tokens"
        )
    plain = _ids(tokenizer, prompt)
    truncated = len(plain) + n > length
    if truncated:
        keep = plain[1 : length - n - 1]
        prompt = tokenizer.decode(keep, skip_special_tokens=True)
        plain = _ids(tokenizer, prompt)
        # Decoding and re-tokenizing may not give back the same ids; cut further until the target fits.
        while len(plain) + n > length and len(plain) > 2:
            prompt = tokenizer.decode(plain[1:-2], skip_special_tokens=True)
            plain = _ids(tokenizer, prompt)
    edited_prompt = f"{prompt} {target}" if prompt.strip() else target
    edited = _ids(tokenizer, edited_prompt)
    if len(edited) > length:
        raise TargetTokenError(f"the prompt {prompt!r} and the target {target!r} do not fit in {length} tokens")
    source, inserted = align(plain, edited)
    if sum(inserted) != n:
        raise TargetTokenError(
            f"appending {target!r} to {prompt!r} changed the prompt's own tokens; GIE needs the target to "
            "tokenize the same alone and after the prompt"
        )
    target_index, k = [], 0
    for flag in inserted:
        k += flag
        target_index.append(k if flag else 0)
    # Padding slots past P' copy the same slots of P.
    pad = range(len(edited), length)
    return TokenInterval(
        prompt=prompt,
        edited_prompt=edited_prompt,
        source=tuple(source) + tuple(pad),
        inserted=tuple(inserted) + (False,) * len(pad),
        target_index=tuple(target_index) + (0,) * len(pad),
        truncated=truncated,
    )
