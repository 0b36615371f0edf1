"""The workflows behind the CLI, as plain functions: load (with edits), erase, evaluate, measure the toy world.

Everything here is usable from Python too::

    import erasekit.api as ek
    edit = ek.erase("toy-sd", "negprompt", ["star"], out="runs/star")
    result = ek.evaluate_toy("toy-sd", "star", edits=["runs/star"])
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .arguments import as_paths, concept_list, concept_text, path_or_none
from .atomic import atomic_write_text
from .config import InvalidSettingError
from .edits import Edit
from .errors import ModelNotFoundError, NoOpEditError, UnknownConceptError, UnsupportedModelError
from .eval import ToySuiteConfig, ToySuiteResult, run_toy_suite
from .generate import generate
from .methods import EraseRequest, get_method
from .methods.training.engine import CHECKPOINT_DIR
from .models import TOY_MODELS, Backbone, is_toy_folder, load, toy_weights_dir
from .outputs import OutputError, check_output_dir
from .toy import world
from .toy.classifier import ToyClassifier


def is_toy(model: Backbone | str | Path) -> bool:
    """Whether ``model`` (a Backbone, or the name or folder it would be loaded from) is a toy model."""
    name = str(model.name_or_path if isinstance(model, Backbone) else model)
    return name in TOY_MODELS or is_toy_folder(name)


def check_concepts(backbone: Backbone, concepts: Sequence[str]) -> None:
    """On a toy model every concept must be one the toy world knows; on real models any text goes."""
    if is_toy(backbone):
        check_concepts_toy(concepts)


def check_concepts_toy(concepts: Sequence[str]) -> None:
    for concept in concepts:
        try:
            world.concept_head(concept)
        except ValueError as e:
            raise UnknownConceptError(str(e)) from None


def load_model(model: str | Path, edits: Sequence[str | Path | Edit] = (), device=None) -> Backbone:
    """Load ``model`` and apply ``edits`` (a folder or Edit, or a list of them) in order."""
    edits = load_edits(edits)  # a bad folder fails before the model loads
    backbone = load(model, device=device)
    for edit in edits:
        edit.apply(backbone.pipeline)
    return backbone


def load_edits(edits: str | Path | Edit | Sequence[str | Path | Edit]) -> list[Edit]:
    """Edit folders read (and checked); Edit objects kept as they are."""
    return [e if isinstance(e, Edit) else Edit.load(e) for e in as_paths(edits, "edits", keep=(Edit,))]


def erase(model: str | Path | Backbone, method: str, concepts: Sequence[str], out: str | Path | None = None, *,
          anchor: str | None = None, preserve: Sequence[str] = (), settings: dict[str, Any] | None = None,
          seed: int = 0, overwrite: bool = False, resume: bool = False) -> Edit:
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
    request = EraseRequest(targets=concepts, anchor=anchor, preserve=preserve, seed=seed,
                           workdir=str(workdir) if workdir else None, resume=resume)
    named = concepts + preserve + ([anchor] if anchor else [])
    if str(model) in TOY_MODELS:
        check_concepts_toy(named)
    # Everything that needs no model is checked before it loads: a typo costs a second, not a model load.
    config = erasure.make_config(settings, toy=is_toy(model))
    backbone = model if isinstance(model, Backbone) else load(model)
    erasure.check_family(backbone.family)
    check_concepts(backbone, named)
    toy = is_toy(backbone)
    if toy:
        request.prompts = toy_prompts(concepts, seed=seed)
        request.preserve_prompts = toy_preserve_prompts(concepts, preserve, seed=seed + 1)
        request.anchor_prompts = toy_anchor_prompts(request.prompts, concepts, anchor, seed=seed + 2)
    edit = erasure.erase(backbone, request, config)
    # Weight deltas are checked by the engine; a mask set is a no-op when it closes no gate.
    if edit.kind == "mask_set" and all(bool(t.all()) for t in edit.tensors.values()):
        raise NoOpEditError(f"{method}: the masks switch no unit off, so nothing is erased; train longer or with "
                            "larger gate learning rates (--set steps=..., lr_ffn=..., lr_norm=...)")
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
            raise OutputError(f"{workdir} holds an interrupted run; pass --resume to continue it or --overwrite to "
                              "discard it and start afresh")
        # A checkpoint, or the temporary folder of one whose write was cut short.
        ours = (CHECKPOINT_DIR, f".{CHECKPOINT_DIR}.")
        strangers = sorted(p.name for p in workdir.iterdir() if not p.name.startswith(ours)) \
            if workdir.is_dir() else [workdir.name]
        if strangers:
            raise OutputError(f"refusing to discard {workdir}: it holds {', '.join(strangers[:3])}, which erasekit "
                              "did not write; move it away")
        shutil.rmtree(workdir)
    return workdir


def bake_mask_edit(backbone: Backbone, edit: Edit, prune: bool = True) -> dict:
    """Write an MCE mask edit into ``backbone``'s weights: masked FFN units cut out (``prune``: smaller and
    faster) or zeroed (same shapes, saves as a plain diffusers folder). Returns the share removed per site."""
    from .methods.mce import bake, gates_and_masks

    gates, masks = gates_and_masks(edit, backbone.denoiser)
    return bake(backbone.denoiser, gates, masks, prune=prune)


def import_mce_masks(model: str | Path | Backbone, ff: str | Path, norm: str | Path, attn: str | Path | None,
                     concepts: Sequence[str], out: str | Path | None = None) -> Edit:
    """A mask Edit from the MCE authors' released FLUX files (``ff.pt``, ``norm.pt``, optional ``attn.pt``)."""
    from .methods.mce import MCEConfig, find_gates, import_released_masks, mask_edit

    concepts = concept_list(concepts, "concepts")
    if out is not None:
        check_output_dir(out)
    backbone = model if isinstance(model, Backbone) else load(model)
    if backbone.family != "flux":
        raise UnsupportedModelError("the released MCE mask files are for FLUX double-stream blocks")
    gates = find_gates(backbone.denoiser, "flux", heads=attn is not None)
    masks = import_released_masks(gates, ff, norm, attn)
    edit = mask_edit(gates, masks, MCEConfig(heads=attn is not None), backbone, concepts,
                     imported_from=[str(ff), str(norm)] + ([str(attn)] if attn else []))
    if out is not None:
        edit.save(out)
    return edit


def toy_anchor_prompts(prompts: Sequence[str], concepts: Sequence[str], anchor: str | None,
                       seed: int = 0) -> list[str]:
    """Each prompt with its target word replaced by ``anchor``, or else by another value of the same head."""
    rng = random.Random(seed)
    out = []
    for prompt in prompts:
        words = prompt.split()
        for concept in concepts:
            options = [v for v in world.HEADS[world.concept_head(concept)] if v != concept]
            swap = anchor if anchor and world.concept_head(anchor) == world.concept_head(concept) else rng.choice(options)
            words = [swap if w == concept else w for w in words]
        out.append(" ".join(words))
    return out


def toy_preserve_prompts(concepts: Sequence[str], preserve: Sequence[str] = (), n: int = 64,
                         seed: int = 0) -> list[str]:
    """The prompts a method keeps in place while it erases ``concepts``: captions without any of them; with
    ``preserve`` concepts, half of them name those (still without the erased ones)."""
    without = toy_prompts(concepts, n=n, seed=seed, without=True)
    if not preserve:
        return without
    named = toy_prompts(preserve, n=n // 2, seed=seed + 100, excluding=concepts)
    return named + without[:n - len(named)]


def toy_prompts(concepts: Sequence[str], n: int = 64, seed: int = 0, without: bool = False,
                excluding: Sequence[str] = ()) -> list[str]:
    """Training-template captions of the toy world that name each concept by its word (or, with ``without``,
    captions of images that have none of the concepts), showing none of the ``excluding`` concepts. Held-out
    templates are never used."""
    if set(concepts) & set(excluding):
        raise ValueError("a concept cannot be both named and excluded")
    avoided = list(excluding) + (list(concepts) if without else [])
    for head, values in world.HEADS.items():
        if set(values) <= set(avoided):
            raise ValueError(f"no toy caption avoids every {head} ({', '.join(values)})")
    rng = random.Random(seed)

    def shows_excluded(sample, excluded):
        return any(sample.names[world.concept_head(c)] == c for c in excluded)

    prompts: list[str] = []
    if without:
        while len(prompts) < n:
            sample = world.random_samples(1, rng)[0]
            if not shows_excluded(sample, avoided):
                prompts.append(world.caption(sample, rng))
        return prompts
    per = max(1, n // len(concepts))
    for concept in concepts:
        head = world.concept_head(concept)
        made = 0
        while made < per:
            sample = world.random_samples(1, rng, fixed={head: concept})[0]
            if shows_excluded(sample, excluding):
                continue
            text = world.caption(sample, rng, canonical=True)
            if concept in text.split():
                prompts.append(text)
                made += 1
    return prompts


def load_classifier(path: str | Path | None = None) -> ToyClassifier:
    folder = Path(path) if path else toy_weights_dir() / "classifier"
    if not (folder / "config.json").is_file():
        raise ModelNotFoundError(f"no toy classifier at {folder}; train it with `erasekit toy train classifier`")
    return ToyClassifier.from_pretrained(folder).eval()


def generator_fn(backbone: Backbone, batch_size: int = 50, **kwargs):
    def fn(prompts: list[str], seeds: list[int]) -> torch.Tensor:
        return generate(backbone, prompts, seeds, batch_size=batch_size, **kwargs)
    return fn


def evaluate_toy(model: str | Path, concept: str, edits: Sequence[str | Path | Edit] = (),
                 config: ToySuiteConfig | None = None, progress: bool = True) -> ToySuiteResult:
    """Run the toy suite for ``concept`` on ``model`` with ``edits`` against the unedited model."""
    config = config or ToySuiteConfig(concept=concept)
    edits = load_edits(edits)  # fail on a bad folder before loading
    if str(model) in TOY_MODELS:
        check_concepts_toy([concept])
    base = load(model)
    if not is_toy(base):
        raise UnknownConceptError(f"the toy suite needs a toy model ({', '.join(TOY_MODELS)}), not {model}")
    check_concepts(base, [concept])
    classifier = load_classifier()
    if edits:
        edited = load_model(model, edits)
        result = run_toy_suite(config, classifier, generator_fn(edited, config.batch_size),
                               base=generator_fn(base, config.batch_size), progress=progress)
    else:
        result = run_toy_suite(config, classifier, generator_fn(base, config.batch_size), progress=progress)
    return result


def _nan_to_null(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_null(v) for v in value]
    return value


def write_json(path: str | Path, payload: Any) -> Path:
    """Write JSON atomically (temporary file, then rename). A non-finite number (NaN: a rate over nothing, a
    removal rate with nothing to remove) is written as ``null``: ``NaN`` is not JSON and breaks other readers."""
    return atomic_write_text(path, json.dumps(_nan_to_null(payload), indent=2, default=str, allow_nan=False))


def toy_quality(models: Sequence[str] = TOY_MODELS, n: int = 300, steps: int = 25, seed: int = 1234,
                batch_size: int = 100, progress: bool = True) -> dict[str, Any]:
    """Accuracy of the judge on fresh real images and of each toy model's samples, per head.

    Prompts come from the held-out templates only (with synonyms), one seed per image.
    """
    classifier = load_classifier()
    rng = random.Random(seed)
    samples = world.random_samples(n, rng)
    truth = world.labels(samples)
    real = world.render(samples, torch.Generator().manual_seed(seed))
    report: dict[str, Any] = {"n": n, "steps": steps, "seed": seed,
                              "classifier_real": _accuracies(classifier.predict(real), truth)}
    prompts = [world.caption(s, rng, world.HELDOUT_TEMPLATES) for s in samples]
    for name in models:
        backbone = load(name)
        images = generate(backbone, prompts, [seed + i for i in range(n)], num_inference_steps=steps,
                          batch_size=batch_size, progress=progress)
        report[name] = _accuracies(classifier.predict(images), truth)
        report[name]["guidance_scale"] = backbone.defaults.guidance_scale
    return report


def _accuracies(pred: dict[str, torch.Tensor], truth: dict[str, torch.Tensor]) -> dict[str, float]:
    acc = {h: round(float((pred[h] == truth[h]).float().mean()), 4) for h in world.HEADS}
    every = torch.stack([pred[h] == truth[h] for h in world.HEADS]).all(0)
    acc["all_heads"] = round(float(every.float().mean()), 4)
    return acc
