"""The configuration of UCE, with the paper's defaults where it gives them and the released code's elsewhere."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ...config import CheckedConfig, InvalidSettingError, Range, at_least, positive

# Which token embeddings of a concept enter the system (see UCEConfig.tokens).
TOKEN_CHOICES = ("all", "last")
# Where the erased token vectors are read (see UCEConfig.contexts).
CONTEXT_CHOICES = ("none", "prompts")


@dataclass
class UCEConfig(CheckedConfig):
    """UCE (Gandikota et al., WACV 2024, arXiv 2308.14761). The closed form is Eq. 7 with the ridge of the
    released code added (``erasekit.methods.uce.closed_form``); read against the released repository
    rohitgandikota/unified-concept-editing at 28c81ed (``trainscripts/uce_sd_erase.py``, ``UCE()``, lines 12-88;
    ``trainscripts/uce_flux_edit.py`` lines 13-121; the 2023 ``train-scripts/train_erase.py``, ``edit_model``).

    Symbols: in ``W = (s_e Σ v*_e c_eᵀ + s_p Σ W₀ c_p c_pᵀ + λ W₀)(s_e Σ c_e c_eᵀ + s_p Σ c_p c_pᵀ + λ I)⁻¹``,
    ``s_e`` is ``erase_scale``, ``s_p`` ``preserve_scale`` (the weight of the preservation terms) and ``λ`` is
    ``lamb``, the ridge toward the original weights.

    Where we follow the released code:

    * ``lamb = 0.5``. Eq. 7 has no ridge term and is invertible only when the preserved embeddings span the
      whole text space (768 dimensions on SD 1.x), which a handful of concepts never do. The released code adds
      ``lamb·W_old`` to the left factor and ``lamb·I`` to the right one (``uce_sd_erase.py`` lines 60-63, default
      ``--lamb 0.5`` line 107; the same in ``train_erase.py`` lines 233-237 and 442): a ridge toward ``W₀``.
      ``lamb = 0`` gives Eq. 7 exactly; a singular system is refused (``SingularSystemError``).
    * ``erase_scale = preserve_scale = 1`` (``uce_sd_erase.py`` lines 105-106; Eq. 7 weighs both terms equally).
    * ``edit_keys``: both ``to_k`` and ``to_v`` of every cross-attention ``attn2`` (the paper edits key and value
      projections; ``uce_sd_erase.py`` line 18).
    * The guide: the anchor (``--anchor``) or, by default, the empty prompt (``--guide_concepts`` default ``''``,
      ``uce_sd_erase.py`` lines 136-138; the code's switch to ``'art'`` for its ``--concept_type art`` is not
      taken: give ``--anchor art``).

    Where we do not:

    * ``tokens``: ``"all"`` (default) puts every token of the concept's phrase into the system, each paired with
      the guide's token at the same place counted from the end (the last with the last, ...; tokens beyond the
      guide's length with the guide's first) — the paper's "concept's embeddings", as we read its method section.
      ``"last"`` takes only the last token of each phrase, as the released ``uce_sd_erase.py`` does
      (``attention_mask.sum() - 2``, lines 34-42, for erased, guide and preserved concepts alike). For the empty
      guide that index picks the slot before the first token: CLIP's start token on SD; on FLUX's T5, which has
      no start token, the index −1 wraps to the last padding slot — both kept here. (The 2023 ``train_erase.py``
      used the last token *and* every slot after it, end token and padding; not offered.)
    * FLUX (``uce_flux_edit.py`` lines 25-28): the released code edits ``context_embedder`` (T5 token
      embeddings → the text stream) and the pooled-text projection ``time_text_embed.text_embedder.linear_1``
      (pooled CLIP), the two linears that read the text encoders' outputs; so do we (``flux_pooled`` for the
      second). The joint attention's ``add_k_proj``/``add_v_proj`` read the text stream after a time-modulated
      norm and, past the first block, after joint attention with the image: no fixed text embedding enters them,
      so they have no closed form in the concept's embedding. The released code's targets include the
      projection's bias (``module(t_emb)``, line 81), which the edited layer then adds a second time; here the
      bias is kept and the targets are ``W₀ c_guide``.

    Beyond the paper and ``uce_sd_erase.py``:

    * ``contexts``: ``"none"`` (default) reads the erased vectors from the concept encoded alone, as the paper
      and ``uce_sd_erase.py`` do. ``"prompts"`` also reads them from every occurrence of the concept's tokens in
      the erase request's target prompts (the toy world's training captions on toy models, the request's
      templates elsewhere), each paired with the guide as the lone concept is. A causal text encoder gives a word
      a different vector in every context (on the toy CLIP a shape word alone has cosine 0.14 with the same word
      as the second object of a caption), so an edit keyed on the lone encoding can miss the word where prompts
      use it. The 2023 ``train-scripts/train_erase.py`` has the same idea as ``--add_prompts`` (off by default):
      five templates per ``--concept_type`` ("image of {concept}", "painting by {concept}", ..., lines 355-374 at
      18287f6), read at the concept's last token and every slot after it; here only the concept's own tokens
      are read, so the other words of a prompt are not moved.

    ``preserve_file``: a text file with one preserved concept per line (or a CSV with a ``prompt`` column),
    added to ``--preserve``; the released code reads its preserved artists from a CSV the same way
    (``train_erase.py`` lines 409-415). On toy models the erase workflow also passes its preservation prompts
    (captions of scenes without the concept), which enter like preserved concepts.
    """

    RANGES: ClassVar[dict[str, Range]] = {
        "erase_scale": positive(),
        "preserve_scale": at_least(0),
        "lamb": at_least(0),
    }

    erase_scale: float = 1.0  # s_e; released uce_sd_erase.py --erase_scale 1
    preserve_scale: float = 1.0  # s_p, the preservation terms' weight (Eq. 7: 1); released --preserve_scale 1
    lamb: float = 0.5  # λ, ridge toward W₀ (released --lamb 0.5; Eq. 7 alone is lamb = 0)
    tokens: str = "all"  # "all" tokens of each phrase (the paper, as we read it) or the "last" (released)
    edit_keys: bool = True  # SD: to_k as well as to_v (paper and released code: both)
    flux_pooled: bool = True  # FLUX: also the pooled-text projection (released uce_flux_edit.py)
    preserve_file: str | None = None  # one preserved concept per line (.txt) or a CSV "prompt" column
    contexts: str = "none"  # also read the concept's tokens in the target "prompts" (2023 code's --add_prompts)

    def __post_init__(self):
        super().__post_init__()
        if self.tokens not in TOKEN_CHOICES:
            raise InvalidSettingError(f"tokens must be one of {TOKEN_CHOICES}, not {self.tokens!r}")
        if self.contexts not in CONTEXT_CHOICES:
            raise InvalidSettingError(f"contexts must be one of {CONTEXT_CHOICES}, not {self.contexts!r}")
