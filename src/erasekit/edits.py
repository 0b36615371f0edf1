"""Edits: what an erasure method produces, saved and loaded as a folder, applied to a diffusers pipeline.

An edit folder holds ``edit.json`` (the manifest) and, when the edit carries tensors, ``tensors.safetensors``.
Three kinds:

* ``weight_delta``: new values of the denoiser tensors a fine-tuning method changed (only those);
* ``mask_set``: per-unit masks (MCE);
* ``inference_control``: no weights change; ``apply`` installs the method's control on the pipeline
  (a negative prompt, attention processors, ...), and ``remove`` takes it off again.

Edits compose: apply one, then another, to the same pipeline.

The manifest is checked, not trusted. ``Edit.load`` refuses another format version, a folder whose tensors have
no checksum (or a damaged tensors file), and a weight or mask edit without tensors; ``Edit.apply`` refuses an
edit whose method is unknown or makes another kind of edit (``methods.base.check_edit_method``). A weight delta
stores new values, not differences, so on another model of the same architecture it would silently swap
weights: its manifest's ``base_weights`` maps every tensor it replaces (for a LoRA edit, each adapted layer's
``<module>.weight``) to a ``fingerprint`` of the base model's original values — shape, a probe of a few values
and the norm — and ``apply`` refuses a model whose values differ beyond what fp16/bf16 rounding explains.

Format 2 added ``base_weights``. Format-1 mask and inference-control edits are read as before (nothing else
changed); format-1 weight deltas are refused at load, since nothing can check which model they fit.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .atomic import atomic_directory, write_json
from .checksums import sha256_file
from .errors import InvalidEditError
from .outputs import check_output_dir

MANIFEST = "edit.json"
TENSORS = "tensors.safetensors"
KINDS = ("weight_delta", "mask_set", "inference_control")
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)  # see the module docstring
NEEDS_TENSORS = ("weight_delta", "mask_set")


def library_versions() -> dict[str, str]:
    """Versions of erasekit, Python and the libraries whose behaviour changes what an edit or a number is: recorded
    in every edit manifest and (as ``eval.provenance.environment``) with every result."""
    import accelerate
    import diffusers
    import transformers

    from . import __version__

    return {
        "erasekit": __version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "accelerate": accelerate.__version__,
        "python": platform.python_version(),
    }


@dataclass
class Edit:
    """The result of an erasure method.

    Attributes:
        kind: one of ``KINDS``.
        method: the registered method name (``"negprompt"``, ``"erasediff"``, ...).
        config: the method's config, as a dict (what ``Config(**config)`` rebuilds).
        base_model: the model id or path the edit was made on.
        concepts: the erased concept(s).
        family: the backbone family (``"sd"``, ``"flux"``) the edit applies to.
        tensors: tensors the edit carries (weight values, masks, adapter weights), saved as safetensors.
        data: small JSON-able settings the edit needs at apply time (e.g. the negative prompt).
        notes: free text shown to users (e.g. "reconstructed from the paper's abstract").
        base_weights: for a weight delta, the ``fingerprint`` of the base model's original values of every
            tensor it replaces, keyed ``<component>.<name>``; ``apply`` checks the model against it.
    """

    kind: str
    method: str
    config: dict[str, Any]
    base_model: str
    concepts: list[str]
    family: str
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    base_weights: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise InvalidEditError(f"unknown edit kind {self.kind!r}; expected one of {', '.join(KINDS)}")

    # ------------------------------------------------------------------------------------------- files

    def manifest(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "method": self.method,
            "config": self.config,
            "base_model": self.base_model,
            "family": self.family,
            "concepts": list(self.concepts),
            "data": self.data,
            "notes": self.notes,
            "created": self.created,
            "versions": library_versions(),
            "tensors": sorted(self.tensors),
            "base_weights": self.base_weights,
        }

    def save(self, directory: str | Path, overwrite: bool = False) -> Path:
        """Write the edit folder atomically: a crash leaves either the old folder or the new one, never half."""
        directory = check_output_dir(directory, overwrite)  # replaces only an erasekit folder, never the cwd
        with atomic_directory(directory) as tmp:
            manifest = self.manifest()
            if self.tensors:
                tensors = {k: v.detach().to("cpu").contiguous() for k, v in self.tensors.items()}
                save_file(tensors, tmp / TENSORS)
                manifest["sha256"] = {TENSORS: sha256_file(tmp / TENSORS)}
            write_json(tmp / MANIFEST, manifest)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> Edit:
        """Read an edit folder, checking that it is complete and that tensors are safetensors only."""
        directory = Path(directory)
        if not directory.is_dir():
            raise InvalidEditError(f"{directory} is not an edit folder (no such directory)")
        manifest_path = directory / MANIFEST
        if not manifest_path.is_file():
            raise InvalidEditError(f"{directory} has no {MANIFEST}: not an erasekit edit, or a partial one")
        try:
            manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError as e:
            raise InvalidEditError(f"{manifest_path} is not valid JSON ({e.msg}); the edit folder is damaged") from e
        missing = [k for k in ("kind", "method", "config", "base_model", "concepts", "family") if k not in manifest]
        if missing:
            raise InvalidEditError(f"{manifest_path} lacks {', '.join(missing)}; the edit folder is damaged")
        unsafe = sorted(p.name for p in directory.iterdir() if p.suffix in (".pt", ".pth", ".bin", ".ckpt", ".pkl"))
        if unsafe:
            raise InvalidEditError(
                f"{directory} holds {', '.join(unsafe)}: erasekit loads weights only from safetensors "
                "(pickle files can run code); convert them to .safetensors first"
            )
        version = manifest.get("format_version")
        if version not in READABLE_FORMATS:
            raise InvalidEditError(
                f"{manifest_path} is in edit format {version}, which this erasekit (format "
                f"{FORMAT_VERSION}) does not read; make the edit again with this erasekit"
            )
        kind, base = manifest["kind"], manifest.get("base_weights") or {}
        tensors: dict[str, torch.Tensor] = {}
        expected = manifest.get("tensors") or []
        if not expected and kind in NEEDS_TENSORS:
            raise InvalidEditError(
                f"{manifest_path} lists no tensors, but a {kind} edit is made of them; the edit folder is damaged"
            )
        if kind == "weight_delta" and not base:
            raise InvalidEditError(
                f"{manifest_path} records no fingerprint of the base-model weights this edit replaces (it was "
                "written before edit format 2, or altered), so nothing can check which model it fits; make it again"
            )
        if expected:
            path = directory / TENSORS
            if not path.is_file():
                raise InvalidEditError(f"{directory} lacks {TENSORS}, which its manifest lists; the edit is partial")
            want = (manifest.get("sha256") or {}).get(TENSORS)
            if not want:
                raise InvalidEditError(
                    f"{manifest_path} lists tensors but {TENSORS} has no checksum; the folder was "
                    "not written by erasekit or is damaged"
                )
            if sha256_file(path) != want:
                raise InvalidEditError(f"{path} does not match the checksum in {MANIFEST}; the file is damaged")
            try:
                tensors = load_file(path)
            except (SafetensorError, OSError) as e:
                raise InvalidEditError(f"{path} is not a readable safetensors file ({e}); the file is damaged") from e
            absent = sorted(set(expected) - set(tensors))
            if absent:
                raise InvalidEditError(f"{path} lacks tensors {absent[:3]}...; the edit is partial")
            wrong = sorted(k for k in set(base) & set(tensors) if base[k].get("shape") != list(tensors[k].shape))
            if wrong:
                raise InvalidEditError(
                    f"{path} holds {wrong[0]} in another shape than {MANIFEST} records; the edit folder is damaged"
                )
        return cls(
            kind=kind,
            method=manifest["method"],
            config=manifest["config"],
            base_model=manifest["base_model"],
            concepts=list(manifest["concepts"]),
            family=manifest["family"],
            tensors=tensors,
            data=manifest.get("data") or {},
            notes=manifest.get("notes", ""),
            created=manifest.get("created", ""),
            base_weights=base,
        )

    def summary(self) -> dict[str, Any]:
        return {"method": self.method, "kind": self.kind, "concepts": list(self.concepts), "created": self.created}


def export_pipeline(pipeline, out_dir: str | Path) -> Path:
    """Save ``pipeline`` (with weight edits applied, LoRA adapters merged) as a plain diffusers folder."""
    for component in ("unet", "transformer"):
        module = getattr(pipeline, component, None)
        if module is not None and getattr(module, "peft_config", None):
            module.fuse_lora(lora_scale=1.0)
            module.unload_lora()
    with atomic_directory(out_dir) as tmp:
        pipeline.save_pretrained(tmp, safe_serialization=True)
    return out_dir
