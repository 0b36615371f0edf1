"""GIE's attention control (§1.5): diffusers attention processors sharing one ``InhibitionState``.

The UNet runs both branches in one batch. While branch A is needed the rows are
``[A_uncond, B_uncond, A_cond, B_cond]`` (``[A_cond, B_cond]`` without guidance); only ``B_cond`` is edited:

* cross-attention, the first ``n_cross`` steps: the map of every non-target column is branch A's map at the
  matching column of P; the target columns carry ``w_k`` times the target concept's own map
  ``softmax(Q_B K*ᵀ)[:, k]`` (K* from the target's stand-alone encoding c*). Rows of the edited map no longer sum
  to one, by design: with w < 0 the target's value vector is subtracted where the image looks like the target.
* self-attention, the first ``n_self`` steps, at the coarse levels only: branch A's map (structure kept).

``mode="features"`` runs the control of step 0 (self-attention included where its window is open) with w ≡ 1
over rows ``[A_cond, B_cond]`` and records, per cross-attention layer, the mean over heads and positions of the
target columns of B's target map: the adapter's input. Every other row, step and layer goes through diffusers'
own ``AttnProcessor2_0``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import AttnProcessor2_0


@dataclass
class InhibitionState:
    """What the processors of one UNet need to know about the current call; the sampler updates it."""

    mode: str = "off"  # "off" | "control" | "features"
    step: int = 0
    n_cross: int = 0  # cross-attention is controlled while step < n_cross
    n_self: int = 0  # self-attention is copied from A while step < n_self ...
    self_max_tokens: int = 256  # ... in layers with at most this many query positions
    batch: int = 0  # prompts per branch
    with_uncond: bool = True
    source: torch.Tensor | None = None  # (batch, L) long: column of A's map copied to each slot of P'
    inserted: torch.Tensor | None = None  # (batch, n) long: the target slots of P'
    copied: torch.Tensor | None = None  # (batch, L) bool: the slots of P' that copy a slot of P
    target_embeds: torch.Tensor | None = None  # (1, L, C): c*, the target's own encoding
    target_columns: torch.Tensor | None = None  # (n,) long: the target tokens' columns in c* (1..n)
    weights: torch.Tensor | None = None  # (batch, n): w per prompt and target token
    features: list[torch.Tensor] = field(default_factory=list)  # per cross-attention layer, (batch, n)

    def cond_rows(self) -> tuple[slice, slice]:
        start = 2 * self.batch if (self.with_uncond and self.mode == "control") else 0
        return slice(start, start + self.batch), slice(start + self.batch, start + 2 * self.batch)


class InhibitionProcessor:
    """The processor of one attention module: controls branch B or defers to ``AttnProcessor2_0``."""

    def __init__(self, state: InhibitionState, cross: bool):
        self.state = state
        self.cross = cross
        self.plain = AttnProcessor2_0()

    def _active(self, hidden_states: torch.Tensor) -> bool:
        s = self.state
        if s.mode == "off":
            return False
        step = 0 if s.mode == "features" else s.step  # the feature pass is step 0 under full control
        if self.cross:
            return s.mode == "features" or step < s.n_cross
        return step < s.n_self and hidden_states.shape[1] <= s.self_max_tokens

    def __call__(
        self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs
    ):
        flat = hidden_states if hidden_states.ndim == 3 else hidden_states.flatten(2).transpose(1, 2)
        if attention_mask is not None or attn.spatial_norm is not None or not self._active(flat):
            return self.plain(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        return self._controlled(attn, hidden_states, encoder_hidden_states)

    def _controlled(self, attn, hidden_states, encoder_hidden_states):
        s = self.state
        residual, input_ndim = hidden_states, hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        batch_size = hidden_states.shape[0]
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if encoder_hidden_states is not None and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)

        heads = attn.heads
        query, key, value = attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)
        head_dim = key.shape[-1] // heads

        def split(x):
            return x.view(x.shape[0], -1, heads, head_dim).transpose(1, 2)

        query, key, value = split(query), split(key), split(value)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        rows_a, rows_b = s.cond_rows()
        out = torch.empty_like(query)
        plain_rows = slice(0, rows_a.start)
        if rows_a.start > 0:  # the unconditional rows: untouched
            out[plain_rows] = F.scaled_dot_product_attention(query[plain_rows], key[plain_rows], value[plain_rows])
        # B applies A's own map. M_A·V_A and M_A·V_B' come from one fused attention call over the concatenated
        # values, so A's map is never materialised (V_B' = B's values regrouped into A's columns, see below).
        value_b = self._regrouped_values(value[rows_b]) if self.cross else value[rows_b]
        both = F.scaled_dot_product_attention(query[rows_a], key[rows_a], torch.cat([value[rows_a], value_b], -1))
        out[rows_a], out[rows_b] = both[..., :head_dim], both[..., head_dim:]
        if self.cross:
            out[rows_b] += self._inhibitor(attn, query[rows_b], value[rows_b], split)

        hidden_states = out.transpose(1, 2).reshape(batch_size, -1, heads * head_dim).to(query.dtype)
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor

    def _regrouped_values(self, value_b):
        """Σ_j M_A[:, π(j)] V_B[j] over the copied slots j equals M_A · V_B' with V_B'[i] = Σ_{π(j)=i} V_B[j]."""
        s = self.state
        b, heads, length, dim = value_b.shape
        index = s.source[:, None, :, None].expand(b, heads, length, dim)
        kept = value_b * s.copied[:, None, :, None].to(value_b.dtype)  # the target slots take no part
        return torch.zeros_like(value_b).scatter_add_(2, index, kept)

    def _inhibitor(self, attn, query_b, value_b, split):
        """Σ_k w_k · softmax(Q_B K*ᵀ)[:, k] ⊗ V_B[slot of k]: only the target columns of the target's map."""
        s = self.state
        context_star = s.target_embeds.to(query_b.dtype)
        if attn.norm_cross:
            context_star = attn.norm_encoder_hidden_states(context_star)
        key_star = split(attn.to_k(context_star))
        if attn.norm_k is not None:
            key_star = attn.norm_k(key_star)
        logits = query_b @ key_star.transpose(-1, -2) * attn.scale
        probs_star = (logits[..., s.target_columns] - logits.logsumexp(dim=-1, keepdim=True)).exp()
        if s.mode == "features":
            s.features.append(probs_star.mean(dim=(1, 2)).float())
            weights = torch.ones_like(s.weights)
        else:
            weights = s.weights
        b, heads, _, dim = value_b.shape
        inserted = s.inserted[:, None, :, None].expand(b, heads, s.inserted.shape[1], dim)
        return (probs_star * weights[:, None, None, :].to(probs_star.dtype)) @ value_b.gather(2, inserted)


_ORIGINAL = "_erasekit_gie_original_processors"


def controls(unet, state: InhibitionState) -> bool:
    """Whether ``unet``'s processors are the ones driven by ``state``."""
    return all(isinstance(p, InhibitionProcessor) and p.state is state for p in unet.attn_processors.values())


def install(unet, state: InhibitionState) -> None:
    """Drive every attention module of ``unet`` by ``state``. The processors the UNet had before any GIE control
    are kept on the UNet, so a second sampler taking over (or removal) never mistakes GIE's for the originals."""
    if controls(unet, state):
        return
    if getattr(unet, _ORIGINAL, None) is None:
        setattr(unet, _ORIGINAL, dict(unet.attn_processors))
    unet.set_attn_processor(
        {name: InhibitionProcessor(state, cross=name.split(".")[-2] == "attn2") for name in unet.attn_processors}
    )


def uninstall(unet, state: InhibitionState) -> None:
    """Give back the original processors if ``state`` drives the UNet (another sampler's control stays)."""
    original = getattr(unet, _ORIGINAL, None)
    if original is not None and controls(unet, state):
        unet.set_attn_processor(dict(original))
        delattr(unet, _ORIGINAL)  # the UNet is as it was before install


def count_cross_attention_layers(unet) -> int:
    return sum(1 for name in unet.attn_processors if name.split(".")[-2] == "attn2")
