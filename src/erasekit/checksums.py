"""Checksums of files and fingerprints of tensors, models and edits: what a run folder records about what
made its contents, so that a resumed run can tell whether it is the same run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

PROBE_SIZE = 8  # values of each tensor a fingerprint keeps


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_json(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def fingerprint(tensors: dict[str, torch.Tensor]) -> dict[str, dict[str, Any]]:
    """Per tensor: its shape, ``PROBE_SIZE`` values at evenly spaced flat indices and its norm, as float32.

    A few numbers a tensor, yet enough to tell one model's weights from another's (an edit's ``base_weights``),
    at the cost of one pass over the values and no copy. The indices are integer arithmetic, so that the probe
    reads the same values on every device.
    """
    out = {}
    for name, tensor in tensors.items():
        flat = tensor.detach().flatten()
        n, k = flat.numel(), min(flat.numel(), PROBE_SIZE)
        index = torch.tensor([i * (n - 1) // max(k - 1, 1) for i in range(k)], dtype=torch.long, device=flat.device)
        out[name] = {
            "shape": list(tensor.shape),
            "probe": flat[index].float().tolist(),
            "norm": float(torch.linalg.vector_norm(flat, dtype=torch.float32)),
        }
    return out


def tensors_fingerprint(tensors: Iterable[tuple[str, torch.Tensor]]) -> str:
    """One hash of ``fingerprint`` and the dtype of every tensor: equal for the same weights in the same precision,
    different for any training run that moved them."""
    tensors = dict(tensors)
    return sha256_json([fingerprint(tensors), {k: str(v.dtype) for k, v in tensors.items()}])


def pipeline_fingerprint(pipeline) -> str:
    """Every module of a diffusers pipeline (denoiser, text encoders, VAE), as ``tensors_fingerprint`` sees it."""
    tensors = []
    for component, module in sorted(pipeline.components.items()):
        if isinstance(module, torch.nn.Module):
            tensors += [(f"{component}.{n}", p) for n, p in module.state_dict().items()]
    return tensors_fingerprint(tensors)


def edit_fingerprint(edit) -> str:
    """An ``Edit``'s manifest fields and tensors (its creation time included: two runs are two edits)."""
    fields = {
        k: getattr(edit, k) for k in ("kind", "method", "config", "base_model", "concepts", "family", "data", "created")
    }
    return sha256_json([fields, tensors_fingerprint(edit.tensors.items())])
