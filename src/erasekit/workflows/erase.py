"""The erase workflow: check everything that needs no model, load it, run the method, save the Edit."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..arguments import concept_list, concept_text, path_or_none
from ..config import InvalidSettingError
from ..edits import Edit
from ..errors import NoOpEditError
from ..methods import EraseRequest, get_method
from ..methods.training.engine import CHECKPOINT_DIR
from ..models import TOY_MODELS, Backbone, is_toy, load, toy_world_version
from ..outputs import OutputError, check_output_dir
from ..toy import worlds


def check_concepts(model: Backbone | str | Path, concepts: Sequence[str]) -> None:
    """On a toy model every concept must be one its toy world knows; on real models any text goes."""
    version = toy_world_version(model)
    if version is not None:
        worlds.check_concepts(concepts, version)


def erase(
    model: str | Path | Backbone,
    method: str,
    concepts: Sequence[str],
    out: str | Path | None = None,
    *,
    anchor: str | None = None,
    preserve: Sequence[str] = (),
    settings: dict[str, Any] | None = None,
    seed: int = 0,
    overwrite: bool = False,
    resume: bool = False,
) -> Edit:
    """Erase ``concepts`` (one or a list) from ``model`` with ``method``; save the Edit to ``out`` when given.

    Everything that can be checked without training is checked first: the output folder (``overwrite`` replaces
    only an edit folder, never a folder erasekit did not write), the concepts, the settings (types and ranges).
    Training methods keep checkpoints in ``<out>.work/`` while they run; ``resume`` continues from there after
    an interruption and ends with the same edit as an uninterrupted run. The folder is removed once the Edit is
    saved; a run that finds one without ``resume`` refuses to discard it unless ``overwrite`` is given.
    """
    concepts = concept_list(concepts, "concepts")
    preserve = concept_list(preserve, "preserve", "preserved concept")
    anchor = None if anchor is None else concept_text(anchor, "anchor")
    out = path_or_none(out, "out")
    if settings is not None and not isinstance(settings, dict):
        raise TypeError(f"settings must be a dict of setting names to values, not {type(settings).__name__}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an integer, not {type(seed).__name__}")
    if seed < 0:
        raise InvalidSettingError(f"seed must be ≥ 0, got {seed}")
    if not isinstance(model, (str, os.PathLike, Backbone)):
        raise TypeError(f"model must be a model name, a folder or a Backbone, not {type(model).__name__}")
    erasure = get_method(method)
    workdir = _workdir(out, overwrite, resume)
    request = EraseRequest(
        targets=concepts,
        anchor=anchor,
        preserve=preserve,
        seed=seed,
        workdir=str(workdir) if workdir else None,
        resume=resume,
    )
    named = concepts + preserve + ([anchor] if anchor else [])
    if str(model) in TOY_MODELS:
        check_concepts(model, named)
    # Everything that needs no model is checked before it loads: a typo costs a second, not a model load.
    config = erasure.make_config(settings, toy=is_toy(model))
    backbone = model if isinstance(model, Backbone) else load(model)
    erasure.check_family(backbone.family)
    check_concepts(backbone, named)
    if backbone.is_toy:
        prompts = worlds.prompts_of(backbone.toy_world_version)
        request.prompts = prompts.toy_prompts(concepts, seed=seed)
        request.preserve_prompts = prompts.toy_preserve_prompts(concepts, preserve, seed=seed + 1)
        request.anchor_prompts = prompts.toy_anchor_prompts(request.prompts, concepts, anchor, seed=seed + 2)
    if getattr(config, "adversarial", False):
        from .adversarial import WhiteBoxAdversary

        request.adversary = WhiteBoxAdversary(
            backbone, ", ".join(concepts), request.target_prompts(), config, seed=config.resolve_seed(seed)
        )
    edit = erasure.erase(backbone, request, config)
    if request.adversary is not None:
        edit.data["adversarial"] = {"refreshes": request.adversary.history}
    # Weight deltas are checked by the engine; a mask set is a no-op when it closes no gate.
    if edit.kind == "mask_set" and all(bool(t.all()) for t in edit.tensors.values()):
        raise NoOpEditError(
            f"{method}: the masks switch no unit off, so nothing is erased; train longer or with "
            "larger gate learning rates (--set steps=..., lr_ffn=..., lr_norm=...)"
        )
    if out is not None:
        edit.save(out, overwrite=overwrite)
        if workdir is not None and workdir.exists():
            shutil.rmtree(workdir)
    return edit


def _workdir(out: Path | None, overwrite: bool, resume: bool) -> Path | None:
    """``<out>.work``, the checkpoint folder of a training run, after the checks on ``out`` and on it."""
    if out is None:
        if resume:
            raise OutputError("resume needs an --out folder (its checkpoints are in <out>.work)")
        return None
    check_output_dir(out, overwrite)
    workdir = Path(f"{out}.work")
    if resume:
        if not workdir.is_dir():
            raise OutputError(f"nothing to resume: {workdir} does not exist")
        return workdir
    if workdir.exists():
        if not overwrite:
            raise OutputError(
                f"{workdir} holds an interrupted run; pass --resume to continue it or --overwrite to "
                "discard it and start afresh"
            )
        # A checkpoint, or the temporary folder of one whose write was cut short.
        ours = (CHECKPOINT_DIR, f".{CHECKPOINT_DIR}.")
        strangers = (
            sorted(p.name for p in workdir.iterdir() if not p.name.startswith(ours))
            if workdir.is_dir()
            else [workdir.name]
        )
        if strangers:
            raise OutputError(
                f"refusing to discard {workdir}: it holds {', '.join(strangers[:3])}, which erasekit "
                "did not write; move it away"
            )
        shutil.rmtree(workdir)
    return workdir
