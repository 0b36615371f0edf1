"""MCE's released masks turned into an erasekit mask Edit."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..arguments import concept_list
from ..edits import Edit
from ..errors import UnsupportedModelError
from ..methods.mce import MCEConfig, find_gates, import_released_masks, mask_edit
from ..models import Backbone, load
from ..outputs import check_output_dir


def import_mce_masks(
    model: str | Path | Backbone,
    ff: str | Path,
    norm: str | Path,
    attn: str | Path | None,
    concepts: Sequence[str],
    out: str | Path | None = None,
) -> Edit:
    """A mask Edit from the MCE authors' released FLUX files (``ff.pt``, ``norm.pt``, optional ``attn.pt``)."""
    concepts = concept_list(concepts, "concepts")
    if out is not None:
        check_output_dir(out)
    backbone = model if isinstance(model, Backbone) else load(model)
    if backbone.family != "flux":
        raise UnsupportedModelError("the released MCE mask files are for FLUX double-stream blocks")
    gates = find_gates(backbone.denoiser, "flux", heads=attn is not None)
    masks = import_released_masks(gates, ff, norm, attn)
    edit = mask_edit(
        gates,
        masks,
        MCEConfig(heads=attn is not None),
        backbone,
        concepts,
        imported_from=[str(ff), str(norm)] + ([str(attn)] if attn else []),
    )
    if out is not None:
        edit.save(out)
    return edit
