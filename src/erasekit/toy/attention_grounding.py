"""Token-grounded cross-attention for toy-sd training: each object word's attention pulled into its object's cell.

Real text-to-image models attend from an object's pixels to that object's words (the property Prompt-to-Prompt,
GIE and UCE build on); they learn it from billions of captions. The toy UNet, trained for minutes on a few hundred
words, reads its captions as a bag: two-object scenes get both colours but bind them to the shapes at chance, and a
shape word's attention mass splits evenly between the occupied cells. This module adds the training pressure that
data supplies at scale, as TokenCompose (Wang et al., CVPR 2024, its token loss) does for SD: for every attribute
word of a training caption, the share of its cross-attention mass that falls outside its object's cell is a loss.

``grounding_targets`` (which cell each caption token belongs to) and ``grounding_loss`` are pure functions;
``AttentionMaps`` installs a recording processor on a UNet's cross-attention layers and removes it.
"""

from __future__ import annotations

import torch
from diffusers.models.attention_processor import AttnProcessor2_0

from .scenes import CELLS, GRID, Scene, caption_words, object_word_positions


def grounding_targets(captions: list[str], scenes: list[Scene], tokenizer, length: int) -> torch.Tensor:
    """(B, length) long: the cell of the object whose attribute word sits in each token slot, −1 elsewhere (the
    BOS, joins, prefixes, style words, padding, and captions whose tokens cannot be lined up with their words)."""
    out = torch.full((len(captions), length), -1, dtype=torch.long)
    for row, (text, scene) in enumerate(zip(captions, scenes)):
        if not text:
            continue
        pieces = [tokenizer.tokenize(w) for w in caption_words(text)]
        if sum(pieces, []) != tokenizer.tokenize(text):
            continue  # the word split and the tokenizer's disagree: leave this caption ungrounded
        starts, at = [], 1  # slot 0 is BOS
        for piece in pieces:
            starts.append(at)
            at += len(piece)
        for obj, positions in object_word_positions(text, scene):
            cell = scene.objects[obj].cell
            for p in positions:
                first, last = starts[p], starts[p] + len(pieces[p])
                out[row, first : min(last, length)] = cell
    return out


def cell_mass(maps: torch.Tensor) -> torch.Tensor:
    """(B, Q, L) attention maps over a square grid of Q queries -> (B, L, CELLS): each token's mass per cell."""
    b, q, length = maps.shape
    side = int(round(q**0.5))
    grid = maps.transpose(1, 2).reshape(b, length, GRID, side // GRID, GRID, side // GRID)
    return grid.sum((3, 5)).reshape(b, length, CELLS)


def grounding_loss(maps: list[torch.Tensor], targets: torch.Tensor, weight: torch.Tensor | None = None):
    """Mean over layers and grounded tokens of (1 − the token's share of attention mass in its cell)²
    (TokenCompose's token loss, with cells for masks). ``maps``: per layer (B, Q, L), softmax over L; ``targets``:
    ``grounding_targets``; ``weight``: (B,) per sample (default 1). Zero when no token is grounded."""
    grounded = targets >= 0
    if not maps or not grounded.any():
        return maps[0].new_zeros(()) if maps else torch.zeros(())
    w = grounded.float() * (1.0 if weight is None else weight.view(-1, 1).float())
    cells = targets.clamp(min=0).unsqueeze(-1)
    total = maps[0].new_zeros(())
    for m in maps:
        mass = cell_mass(m.float())
        share = mass.gather(-1, cells.to(m.device)).squeeze(-1) / mass.sum(-1).clamp_min(1e-8)
        total = total + ((1 - share) ** 2 * w.to(m.device)).sum() / grounded.sum()
    return total / len(maps)


def binding_loss(maps: list[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
    """Mean over layers of (spread + overlap): ``spread``, the mean half-L1 distance of each grounded token's
    distribution over cells from its object's mean (an object's words should look at one place); ``overlap``, the
    mean over pairs of objects in a caption of Σ_c min(their mean distributions) (two objects, two places).
    SynGen's idea (Rassin et al., NeurIPS 2023: a modifier's attention map close to its noun's, far from other
    words') as a training loss over cells. It needs no true cell, so it holds at every noise level — including the
    first steps, where the layout is chosen. Zero when no token is grounded."""
    grounded = targets >= 0
    if not maps or not grounded.any():
        return maps[0].new_zeros(()) if maps else torch.zeros(())
    member = torch.nn.functional.one_hot(targets.clamp(min=0), CELLS).float() * grounded.unsqueeze(-1).float()
    count = member.sum(1)  # (B, objects): grounded tokens per object, objects named by their cell
    present = (count > 0).float()
    pairs = (present.sum(1) * (present.sum(1) - 1) / 2).sum()
    total = maps[0].new_zeros(())
    for m in maps:
        member_m = member.to(m.device)
        mass = cell_mass(m.float())
        dist = mass / mass.sum(-1, keepdim=True).clamp_min(1e-8)
        mean = torch.einsum("blo,blc->boc", member_m, dist) / count.to(m.device).clamp(min=1).unsqueeze(-1)
        own_mean = torch.einsum("blo,boc->blc", member_m, mean)
        spread = (0.5 * (dist - own_mean).abs().sum(-1) * grounded.to(m.device)).sum() / grounded.sum()
        overlap = torch.minimum(mean.unsqueeze(1), mean.unsqueeze(2)).sum(-1)  # (B, objects, objects)
        both = present.unsqueeze(1) * present.unsqueeze(2)
        off_diagonal = both.to(m.device) * (1 - torch.eye(CELLS, device=m.device))
        total = total + spread + (overlap * off_diagonal).sum() / 2 / pairs.clamp(min=1)
    return total / len(maps)


class _RecordingCrossAttention(AttnProcessor2_0):
    """Diffusers' processor for self-attention; cross-attention computed with explicit probabilities, which are
    kept (head-averaged, with their graph) in ``maps``."""

    def __init__(self, maps: list[torch.Tensor]):
        super().__init__()
        self.maps = maps

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        plain = attn.spatial_norm is None and attn.group_norm is None and attn.norm_cross is None
        if encoder_hidden_states is None or hidden_states.ndim != 3 or not plain or attn.residual_connection:
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kwargs)
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))
        value = attn.head_to_batch_dim(attn.to_v(encoder_hidden_states))
        probs = attn.get_attention_scores(query, key, attention_mask)
        self.maps.append(probs.unflatten(0, (-1, attn.heads)).mean(1))
        out = attn.to_out[1](attn.to_out[0](attn.batch_to_head_dim(torch.bmm(probs, value))))
        return out / attn.rescale_output_factor


class AttentionMaps:
    """Record a UNet's cross-attention maps of each forward pass (``maps``, cleared by ``clear``); ``remove``
    restores the processors it found."""

    def __init__(self, unet):
        self.unet = unet
        self.maps: list[torch.Tensor] = []
        self._original = dict(unet.attn_processors)
        recorder = _RecordingCrossAttention(self.maps)
        unet.set_attn_processor({name: recorder if "attn2" in name else p for name, p in self._original.items()})

    def clear(self) -> None:
        self.maps.clear()

    def remove(self) -> None:
        self.unet.set_attn_processor(self._original)
        self.maps.clear()
