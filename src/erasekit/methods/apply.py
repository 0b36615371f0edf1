"""Applying edits to pipelines: through the method registry, one layer above the ``Edit`` data it applies.

A weight delta is copied into the denoiser (after checking that the model is the one it was made on); a mask
set or an inference control is installed by its method (``Method.apply_edit``) and can be taken off again.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from ..arguments import as_paths
from ..checksums import fingerprint
from ..edits import Edit
from ..errors import InvalidEditError
from ..models import Backbone, family_of, load
from ..pipeline_state import applied_edits, editing_state
from .base import check_edit_method

# Probe tolerance: loose enough for the same model loaded in fp16/bf16 (relative rounding <= 2**-9), far tighter
# than the difference between two models' weights.
_PROBE_RTOL, _PROBE_ATOL = 1e-2, 1e-3


def apply_edit(edit: Edit, pipeline):
    """Apply ``edit`` to ``pipeline`` in place and return the pipeline.

    The edit's summary is appended to the pipeline's ``PipelineState.edits`` (``erasekit.pipeline_state``).
    """
    method = check_edit_method(edit)
    _check_family(edit, pipeline)
    with editing_state(pipeline) as state:  # a refused edit leaves no state behind
        if edit.kind == "weight_delta":
            _check_base(edit, pipeline)
            if edit.data.get("lora"):
                _add_lora(pipeline, edit)
            _apply_weights(pipeline, edit.tensors)
        else:
            method.apply_edit(edit, pipeline)
        state.edits.append(edit.summary())
    return pipeline


def remove_edit(edit: Edit, pipeline):
    """Take an inference-control or mask edit off ``pipeline`` (weight deltas cannot be removed).

    Removing the last applied edit leaves the pipeline as it was before any: its ``PipelineState`` is deleted.
    """
    if edit.kind == "weight_delta":
        raise InvalidEditError("a weight-delta edit changes the weights; reload the base model to undo it")
    method = check_edit_method(edit)
    with editing_state(pipeline) as state:  # the last edit removed, the state attribute goes too
        method.remove_edit(edit, pipeline)
        state.remove_summary(edit.summary())
    return pipeline


def load_edits(edits: str | Path | Edit | Sequence[str | Path | Edit]) -> list[Edit]:
    """Edit folders read (and checked); Edit objects kept as they are."""
    return [e if isinstance(e, Edit) else Edit.load(e) for e in as_paths(edits, "edits", keep=(Edit,))]


def load_model(model: str | Path, edits: Sequence[str | Path | Edit] = (), device=None) -> Backbone:
    """Load ``model`` and apply ``edits`` (a folder or Edit, or a list of them) in order."""
    edits = load_edits(edits)  # a bad folder fails before the model loads
    backbone = load(model, device=device)
    for edit in edits:
        apply_edit(edit, backbone.pipeline)
    return backbone


def _check_family(edit: Edit, pipeline) -> None:
    family = family_of(pipeline)
    if family != edit.family:
        raise InvalidEditError(
            f"this {edit.method} edit was made for a {edit.family} model (base {edit.base_model}); "
            f"it cannot be applied to a {family} pipeline"
        )


def _check_base(edit: Edit, pipeline) -> None:
    """Refuse a weight delta on a model whose values of the tensors it replaces are not those it was made on."""
    lora = bool(edit.data.get("lora"))
    replaced = sorted({k.split(".lora_", 1)[0] + ".weight" if lora else k for k in edit.tensors})
    params: dict[str, torch.Tensor] = {}
    for component in {k.partition(".")[0] for k in replaced}:
        module = getattr(pipeline, component, None)
        if isinstance(module, torch.nn.Module):
            # A LoRA edit applied before keeps a layer's own weight as ``<module>.base_layer.weight``.
            params |= {f"{component}.{n}".replace(".base_layer.", "."): p for n, p in module.named_parameters()}
    for key in replaced:
        if key not in params:
            raise InvalidEditError(
                f"the edit changes {key}, which this model does not have; was it made for another model?"
            )
        if key not in edit.base_weights:
            raise InvalidEditError(f"the edit records no fingerprint of {key}, which it replaces; make it again")
        have, want = fingerprint({key: params[key]})[key], edit.base_weights[key]
        if have["shape"] != want["shape"] or not torch.allclose(
            torch.tensor(have["probe"] + [have["norm"]]),
            torch.tensor(want["probe"] + [want["norm"]]),
            rtol=_PROBE_RTOL,
            atol=_PROBE_ATOL,
        ):
            stacked = any(e["kind"] == "weight_delta" for e in applied_edits(pipeline))
            raise InvalidEditError(
                f"this edit was made on {edit.base_model}; the weights it replaces differ in this model ({key}), "
                f"and as it stores new values, not changes, it would swap in those of {edit.base_model}. Apply it to "
                f"{edit.base_model} (in any precision) or make it again on this model"
                + ("; weight edits that replace the same tensors do not stack" if stacked else "")
            )


def _apply_weights(pipeline, tensors: dict[str, torch.Tensor]) -> None:
    """Copy ``component.param`` tensors into the pipeline's modules, checking names and shapes first."""
    by_component: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        component, _, name = key.partition(".")
        by_component.setdefault(component, {})[name] = value
    for component, values in by_component.items():
        module = getattr(pipeline, component, None)
        if not isinstance(module, torch.nn.Module):
            raise InvalidEditError(f"the edit changes '{component}', which this pipeline does not have")
        params = dict(module.named_parameters())
        for name, value in values.items():
            if name not in params:
                raise InvalidEditError(
                    f"the edit changes {component}.{name}, which this model does not have; "
                    "was it made for another model?"
                )
            if params[name].shape != value.shape:
                raise InvalidEditError(
                    f"{component}.{name} has shape {tuple(params[name].shape)} here but "
                    f"{tuple(value.shape)} in the edit; it was made for another model"
                )
        with torch.no_grad():
            for name, value in values.items():
                params[name].copy_(value.to(params[name].device, params[name].dtype))


def _add_lora(pipeline, edit: Edit) -> None:
    """Give the edited component a PEFT LoRA adapter of the edit's shape; its values come with the tensors."""
    from peft import LoraConfig

    components = {key.split(".", 1)[0] for key in edit.tensors}
    for component in components:
        module = getattr(pipeline, component)
        name = f"erasekit_{len(getattr(module, 'peft_config', {}) or {})}"
        module.add_adapter(LoraConfig(**edit.data["lora"]), adapter_name=name)
        # Tensors were saved under the adapter name of the training run; map them onto this one.
        edit.tensors = {
            k.replace(".erasekit.", f".{name}.") if k.startswith(component + ".") else k: v
            for k, v in edit.tensors.items()
        }
