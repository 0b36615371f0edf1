"""The one checkpoint format of every training method (the fine-tuning engine's methods and MCE).

A checkpoint is the folder ``<workdir>/checkpoint`` (``CHECKPOINT_DIR``), written whole or not at all
(``erasekit.atomic.atomic_directory``: built in a temporary sibling, then renamed into place), holding two files
and never a pickle:

``state.safetensors``, every tensor:

* ``param/<name>``: the trained tensors (a fine-tuner's parameters or LoRA adapters, MCE's gate logits);
* ``optim/<name>/<key>``: the optimizer's state tensors of that trained tensor, for any torch optimizer
  (Adam, AdamW: ``exp_avg``, ``exp_avg_sq``, and ``max_exp_avg_sq`` with amsgrad);
* ``rng/generator/<name>``: the state of each seeded ``torch.Generator`` the method draws from;
* ``rng/torch``: torch's global CPU generator; ``rng/cuda/<i>``: CUDA's, per device, once CUDA is in use.

``trainer.json``, everything else::

    {"format": 1,
     "method": ..., "model": ..., "concepts": [...], "config": {...},    # the identity of the run
     "step": 2,                                                          # optimizer steps done
     "optimizer": {"<name>": {"tensors": ["exp_avg", "exp_avg_sq"],     # the keys kept in state.safetensors
                              "scalars": {"step": {"value": 2.0, "dtype": "float32"}}}},
     "python_rng": {"version": 3, "internal": [625 integers], "gauss_next": null},
     "extra": {...}}                                                     # the method's own JSON values

Optimizer state is handled generically: a per-tensor state entry that is a tensor with at least one dimension
goes to ``state.safetensors``; a scalar entry (a 0-d tensor such as Adam's ``step``, or a plain number, bool,
string or ``None``) goes to the JSON with its dtype, and comes back as the same type and value. The optimizer's
hyperparameters are not saved: they come from the configuration, which is part of the identity.

The resume rule, the same for every method:

* ``restore`` is called only when a run resumes; the workflow resumes only when ``<out>.work/`` exists
  (``erasekit.workflows.erase``).
* No checkpoint yet (no ``<workdir>/checkpoint``: the run was killed before its first one, or there is no
  workdir) resumes as a fresh start: ``restore`` returns step 0 and leaves every tensor, optimizer and random
  state as the caller seeded it. A run killed before its first checkpoint is the same as no run.
* A checkpoint of another run (method, model, concepts or configuration differ) raises ``ResumeMismatchError``
  with one message naming each difference. So does a ``checkpoint`` folder this format cannot read (no
  ``trainer.json``, another format, tensors missing or of another shape): a checkpoint is never silently dropped.
* ``restore`` checks everything before it changes anything: a refused resume leaves the caller's fresh state.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ...atomic import atomic_directory
from ...errors import ResumeMismatchError

CHECKPOINT_DIR = "checkpoint"
TENSORS_FILE = "state.safetensors"
META_FILE = "trainer.json"
FORMAT = 1
IDENTITY_KEYS = ("method", "model", "concepts", "config")


def run_identity(method: str, model, concepts, config) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: the method, the model, the concepts and the configuration."""
    return {
        "method": method,
        "model": str(model),
        "concepts": list(concepts),
        "config": asdict(config) if is_dataclass(config) else dict(config),
    }


def _jsonable(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists, paths strings)."""
    return json.loads(json.dumps(value, default=str))


class TrainingCheckpoint:
    """The checkpoint of one training run in ``<workdir>/checkpoint``; ``workdir=None`` keeps none.

    Args:
        workdir: the run's work folder, or ``None`` (``save`` does nothing, ``exists`` is false, ``restore``
            starts afresh).
        identity: what a resumed run must match, from ``run_identity``.
    """

    def __init__(self, workdir: str | Path | None, identity: dict[str, Any]):
        self.folder = Path(workdir) / CHECKPOINT_DIR if workdir is not None else None
        self.identity = _jsonable(identity)
        self.extra: dict[str, Any] = {}

    def exists(self) -> bool:
        """Whether a complete checkpoint is on disk (the NaN guards name it only then)."""
        return self.folder is not None and (self.folder / META_FILE).is_file()

    # ------------------------------------------------------------------------------------------------ save

    def save(
        self,
        step: int,
        tensors: dict[str, torch.Tensor],
        optimizer,
        generators: dict[str, torch.Generator],
        python_rng: random.Random,
        extra: dict[str, Any] | None = None,
    ) -> Path | None:
        """Write the trained ``tensors``, ``optimizer``'s state, every random state and ``extra`` after ``step``
        optimizer steps, atomically. ``optimizer`` may train only tensors among ``tensors``."""
        if self.folder is None:
            return None
        saved = {f"param/{n}": t.detach().cpu().contiguous() for n, t in tensors.items()}
        names = _optimizer_names(optimizer, tensors)
        moments: dict[str, dict[str, Any]] = {}
        for index, state in optimizer.state_dict()["state"].items():
            name = names[index]
            entry = moments.setdefault(name, {"tensors": [], "scalars": {}})
            for key, value in state.items():
                if torch.is_tensor(value) and value.dim() > 0:
                    saved[f"optim/{name}/{key}"] = value.detach().cpu().contiguous()
                    entry["tensors"].append(key)
                else:
                    entry["scalars"][key] = _encode_scalar(name, key, value)
        for name, generator in generators.items():
            saved[f"rng/generator/{name}"] = generator.get_state()
        saved["rng/torch"] = torch.get_rng_state()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            for i, state in enumerate(torch.cuda.get_rng_state_all()):
                saved[f"rng/cuda/{i}"] = state
        version, internal, gauss_next = python_rng.getstate()
        meta = {
            "format": FORMAT,
            **self.identity,
            "step": int(step),
            "optimizer": moments,
            "python_rng": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
            "extra": _jsonable(extra or {}),
        }
        with atomic_directory(self.folder) as tmp:
            save_file(saved, tmp / TENSORS_FILE)
            (tmp / META_FILE).write_text(json.dumps(meta, indent=1))
        return self.folder

    # --------------------------------------------------------------------------------------------- restore

    def restore(
        self,
        tensors: dict[str, torch.Tensor],
        optimizer,
        generators: dict[str, torch.Generator],
        python_rng: random.Random,
    ) -> int:
        """Load the checkpoint into ``tensors`` (in place), ``optimizer``, ``generators``, torch's global RNG and
        ``python_rng``; its ``extra`` goes to ``self.extra``. Returns the step to continue from: 0, with nothing
        changed, when there is no checkpoint yet (see the module's resume rule)."""
        if self.folder is None or not self.folder.exists():
            return 0
        meta = self._read_meta()
        self._check_identity(meta)
        saved = load_file(self.folder / TENSORS_FILE)
        names = _optimizer_names(optimizer, tensors)
        self._check_tensors(meta, saved, tensors, generators)

        with torch.no_grad():
            for name, tensor in tensors.items():
                tensor.copy_(saved[f"param/{name}"])
        current = optimizer.state_dict()
        state: dict[int, dict[str, Any]] = {}
        for index, name in enumerate(names):
            entry = meta["optimizer"].get(name)
            if entry is None:
                continue
            state[index] = {key: saved[f"optim/{name}/{key}"] for key in entry["tensors"]}
            state[index].update({key: _decode_scalar(v) for key, v in entry["scalars"].items()})
        optimizer.load_state_dict({"state": state, "param_groups": current["param_groups"]})
        for name, generator in generators.items():
            generator.set_state(saved[f"rng/generator/{name}"])
        torch.set_rng_state(saved["rng/torch"])
        cuda = sorted((k for k in saved if k.startswith("rng/cuda/")), key=lambda k: int(k.rsplit("/", 1)[1]))
        if cuda and torch.cuda.is_available():
            for key in cuda[: torch.cuda.device_count()]:
                torch.cuda.set_rng_state(saved[key], int(key.rsplit("/", 1)[1]))
        rng = meta["python_rng"]
        python_rng.setstate((rng["version"], tuple(rng["internal"]), rng["gauss_next"]))
        self.extra = meta.get("extra", {})
        return int(meta["step"])

    def _unreadable(self, why: str) -> ResumeMismatchError:
        return ResumeMismatchError(
            f"{self.folder} is not a checkpoint this erasekit can resume ({why}); "
            "start afresh with --overwrite, or use a new --out folder"
        )

    def _read_meta(self) -> dict[str, Any]:
        path = self.folder / META_FILE
        if not path.is_file() or not (self.folder / TENSORS_FILE).is_file():
            raise self._unreadable(f"it lacks {META_FILE} or {TENSORS_FILE}")
        try:
            meta = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise self._unreadable(f"{META_FILE} does not read: {error}") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else None
            raise self._unreadable(f"format {found!r}, this version writes format {FORMAT}")
        return meta

    def _check_identity(self, meta: dict[str, Any]) -> None:
        differences = []
        for key in IDENTITY_KEYS:
            theirs, ours = meta.get(key), self.identity.get(key)
            if theirs == ours:
                continue
            if isinstance(theirs, dict) and isinstance(ours, dict):
                for field in sorted(set(theirs) | set(ours)):
                    if theirs.get(field, "<unset>") != ours.get(field, "<unset>"):
                        differences.append(
                            f"{key}.{field} is {theirs.get(field, '<unset>')!r} there, "
                            f"{ours.get(field, '<unset>')!r} here"
                        )
            else:
                differences.append(f"{key} is {theirs!r} there, {ours!r} here")
        if differences:
            raise ResumeMismatchError(
                f"{self.folder} was written by the {meta.get('method')} run on {meta.get('model')} for "
                f"{', '.join(map(str, meta.get('concepts') or [])) or 'no concepts'}, not this one: "
                f"{'; '.join(differences)}. Resume with the same method, model, concepts and settings, "
                "or use a new --out folder"
            )

    def _check_tensors(self, meta, saved, tensors, generators) -> None:
        problems = []
        theirs = {k[len("param/") :] for k in saved if k.startswith("param/")}
        if theirs != set(tensors):
            missing, unknown = sorted(set(tensors) - theirs), sorted(theirs - set(tensors))
            problems.append(
                f"trained tensors differ: {len(missing)} missing (first: {missing[:3]}), "
                f"{len(unknown)} unknown (first: {unknown[:3]})"
            )
        for name in sorted(theirs & set(tensors)):
            if saved[f"param/{name}"].shape != tensors[name].shape:
                problems.append(
                    f"{name} has shape {tuple(saved[f'param/{name}'].shape)} there, {tuple(tensors[name].shape)} here"
                )
        for name, entry in meta.get("optimizer", {}).items():
            lost = [key for key in entry.get("tensors", []) if f"optim/{name}/{key}" not in saved]
            if lost or name not in tensors:
                problems.append(f"the optimizer state of {name} does not match")
        for key in [f"rng/generator/{name}" for name in generators] + ["rng/torch"]:
            if key not in saved:
                problems.append(f"{key} is missing")
        if "python_rng" not in meta or "step" not in meta:
            problems.append("the step or the Python random state is missing")
        if problems:
            raise self._unreadable("; ".join(problems[:3]))


def _optimizer_names(optimizer, tensors: dict[str, torch.Tensor]) -> list[str]:
    """The names of ``optimizer``'s tensors in its ``state_dict`` order (across its parameter groups)."""
    by_id = {id(t): n for n, t in tensors.items()}
    names = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            if id(p) not in by_id:
                raise ValueError("the optimizer trains a tensor that is not among the checkpoint's tensors")
            names.append(by_id[id(p)])
    return names


def _encode_scalar(name: str, key: str, value: Any) -> dict[str, Any]:
    if torch.is_tensor(value):
        return {"value": value.item(), "dtype": str(value.dtype).removeprefix("torch.")}
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"value": value}
    raise TypeError(
        f"optimizer state {name}/{key} is a {type(value).__name__}; a checkpoint keeps tensors, "
        "numbers, strings, booleans and None"
    )


def _decode_scalar(entry: dict[str, Any]) -> Any:
    if "dtype" in entry:
        return torch.tensor(entry["value"], dtype=getattr(torch, entry["dtype"]))
    return entry["value"]
