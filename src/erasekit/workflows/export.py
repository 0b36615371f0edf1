"""The export workflow: weight and mask edits baked into a plain diffusers folder that needs no erasekit."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..edits import Edit, export_pipeline
from ..errors import InvalidEditError
from ..methods import load_edits, load_model
from ..methods.mce import bake_mask_edit
from ..outputs import check_output_dir


def export(model: str | Path, edits: Sequence[str | Path | Edit], out: str | Path) -> Path:
    """Apply ``edits`` (weight deltas, LoRA merged; masks zeroed) to ``model`` and save it to ``out`` (new)."""
    out = check_output_dir(out)
    edits = load_edits(edits)
    controls = [e.method for e in edits if e.kind == "inference_control"]
    if controls:
        raise InvalidEditError(
            f"{', '.join(controls)} edits act at inference time and cannot be baked into "
            "weights; apply them with `erasekit generate --edit` instead"
        )
    backbone = load_model(model, [e for e in edits if e.kind == "weight_delta"], device="cpu")
    for mask_edit in (e for e in edits if e.kind == "mask_set"):
        # Zeroed, not cut out: the folder keeps the model's shapes, so plain `from_pretrained` loads it.
        bake_mask_edit(backbone, mask_edit, prune=False)
    return export_pipeline(backbone.pipeline, out)
