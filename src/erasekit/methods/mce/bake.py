"""After training: bake binary masks into the weights (pruning masked FFN units), and import released masks."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ...errors import InvalidEditError
from .gates import Gate, is_gated_activation


def _ffn_of(denoiser: nn.Module, gate: Gate):
    """(activation module, its input projection, the FFN's output linear, the rows of the projection that make
    each hidden unit) when ``gate`` sits on an FFN's activation: one row per unit (GELU), or two (GEGLU: the
    unit's row in the value half and in the gate half), as a ``(units, rows per unit)`` index tensor."""
    parts = gate.module.split(".")
    if parts[-2:] != ["net", "0"]:
        return None
    ff = denoiser.get_submodule(".".join(parts[:-2]))
    proj, out = getattr(ff.net[0], "proj", None), ff.net[2] if len(ff.net) > 2 else None
    if not (isinstance(proj, nn.Linear) and isinstance(out, nn.Linear) and out.in_features == gate.units):
        return None
    units = torch.arange(gate.units)
    if is_gated_activation(ff.net[0]) and proj.out_features == 2 * gate.units:
        return ff.net[0], proj, out, torch.stack([units, units + gate.units], dim=1)
    if proj.out_features == gate.units:
        return ff.net[0], proj, out, units[:, None]
    return None


@torch.no_grad()
def bake(denoiser: nn.Module, gates: list[Gate], masks: dict[str, torch.Tensor], prune: bool = True) -> dict:
    """Write binary ``masks`` into ``denoiser``'s weights; returns the share of units removed per gate.

    FFN gates on a projected activation (FLUX's GELU FFNs, the UNet's GEGLU FFNs) with ``prune``: the masked
    hidden units are cut out of both linears (a smaller, faster FFN; GEGLU: the unit's rows of both halves of the
    projection). Without ``prune`` they are zeroed there (the projection's rows, both halves for GEGLU, and the
    output linear's columns). Every other gate zeroes its module's output rows (weight and bias), which is the
    same function. ``prune=False`` zeroes everywhere and keeps every shape, so the model saves as a plain
    diffusers folder that ``from_pretrained`` loads.
    """
    removed = {}
    for gate in gates:
        mask = masks[gate.key].to(torch.bool).cpu()
        removed[gate.key] = float(1 - mask.float().mean())
        if gate.kind == "heads":
            attn = denoiser.get_submodule(gate.module)
            width = attn.to_out[0].in_features // attn.heads
            columns = mask.repeat_interleave(width)
            for proj in (attn.to_out[0], getattr(attn, "to_add_out", None)):
                if proj is not None:
                    proj.weight[:, ~columns.to(proj.weight.device)] = 0
            continue
        ffn = _ffn_of(denoiser, gate)
        if ffn is not None:
            activation, proj, out, unit_rows = ffn
            keep = mask.nonzero().squeeze(1)
            if not prune:
                drop = (~mask).nonzero().squeeze(1)
                rows = unit_rows[drop].T.flatten().to(proj.weight.device)
                proj.weight[rows] = 0
                if proj.bias is not None:
                    proj.bias[rows] = 0
                out.weight[:, drop.to(out.weight.device)] = 0
                continue
            rows = unit_rows[keep].T.flatten().to(proj.weight.device)  # GEGLU: value rows, then gate rows
            keep = keep.to(out.weight.device)
            new_proj = nn.Linear(proj.in_features, len(rows), bias=proj.bias is not None).to(proj.weight)
            new_proj.weight.copy_(proj.weight[rows])
            if proj.bias is not None:
                new_proj.bias.copy_(proj.bias[rows])
            new_out = nn.Linear(len(keep), out.out_features, bias=out.bias is not None).to(out.weight)
            new_out.weight.copy_(out.weight[:, keep])
            if out.bias is not None:
                new_out.bias.copy_(out.bias)
            activation.proj = new_proj
            ff = denoiser.get_submodule(gate.module.rsplit(".", 2)[0])
            ff.net[2] = new_out
            continue
        module = denoiser.get_submodule(gate.module)
        rows = ~mask.to(module.weight.device)
        module.weight[rows] = 0
        if module.bias is not None:
            module.bias[rows] = 0
    return removed


def import_released_masks(
    gates: list[Gate], ff_path: str | Path, norm_path: str | Path, attn_path: str | Path | None = None
) -> dict[str, torch.Tensor]:
    """Binary masks from the MCE authors' FLUX files (``ff.pt``, ``norm.pt``, optionally ``attn.pt``).

    Each file is a list of 1-D logit tensors, binarised at 0: ``ff.pt`` alternates ``ff`` / ``ff_context`` of
    every double-stream block, ``norm.pt`` has one ``norm1_context.linear`` entry per block, ``attn.pt`` one entry
    per attention module (double blocks first, then single blocks). Read with ``weights_only=True``: tensors and
    lists only, never arbitrary pickled objects.
    """

    def read(path) -> list[torch.Tensor]:
        try:
            value = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unpickling refusal is a bad file for us
            raise InvalidEditError(f"{path} is not a list of tensors loadable with weights_only=True ({e})") from e
        if isinstance(value, torch.Tensor):
            value = list(value)
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, torch.Tensor) for v in value):
            raise InvalidEditError(f"{path} does not hold a list of tensors (MCE's mask format)")
        return [v.detach().float().flatten() for v in value]

    by_group: dict[str, list[Gate]] = {"ffn": [], "norm": [], "heads": []}
    for gate in gates:
        by_group[gate.group].append(gate)
    masks: dict[str, torch.Tensor] = {}
    files = [("ffn", ff_path), ("norm", norm_path)] + ([("heads", attn_path)] if attn_path else [])
    for group, path in files:
        values = read(path)
        targets = by_group[group]
        if group == "heads" and len(values) > len(targets):
            values = values[: len(targets)]  # single-stream heads are never masked here
        if len(values) != len(targets):
            raise InvalidEditError(
                f"{Path(path).name} has {len(values)} entries; this model has {len(targets)} "
                f"{group} gate sites: the masks were made for another model shape"
            )
        for gate, logits in zip(targets, values):
            if logits.numel() != gate.units:
                raise InvalidEditError(
                    f"{Path(path).name}: {gate.module} needs {gate.units} values, the file has "
                    f"{logits.numel()}: the masks were made for another model shape"
                )
            masks[gate.key] = (logits > 0).float()
    for gate in gates:  # sites without a file stay fully open
        masks.setdefault(gate.key, torch.ones(gate.units))
    return masks
