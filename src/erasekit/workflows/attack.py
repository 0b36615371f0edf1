"""The attack workflow: one attack on an edited model, its prompts replayable, its folder written whole."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch

from ..atomic import atomic_directory, write_json
from ..eval.attacks import (
    AttackInputs,
    AttackResult,
    concept_pairs,
    get_attack,
    loaded_embedding,
    save_embedding,
    toy_attack_prompts,
)
from ..eval.report import image_grid
from ..generate import generate
from ..methods import load_edits, load_model
from ..models import load
from ..outputs import check_output_dir, write_run_record


def run_attack(
    model: str,
    edits: Sequence,
    attack: str,
    concept: str,
    prompts: Sequence[str],
    seeds: Sequence[int],
    judge,
    out: str | Path,
    *,
    configs: dict | None = None,
    embedding: str | Path | None = None,
    progress: bool = True,
    overwrite: bool = False,
    **gen_kwargs,
) -> AttackResult:
    """One attack on ``model`` with ``edits`` applied; writes ``<out>/results.json``, the attacked prompts
    (``<out>/prompts.csv``, replayable) and a few image rows (``<out>/images.png``: source above, attacked below).

    ``out`` must be new, or with ``overwrite`` an earlier attack's folder; it is written whole at the end, so an
    interrupted attack leaves the earlier folder as it was. ``configs``: attack configs by ``Attack.config_key``
    (``{"unlearndiffatk": UnlearnDiffAtkConfig(...)}``); an attack without one runs with its defaults.
    ``embedding``: a textual-inversion embedding (``embedding.safetensors`` of an earlier attack) loaded into the
    edited model for the attack, so a replay of its prompts draws with its token. A textual-inversion attack
    writes its learned embedding as ``<out>/embedding.safetensors``."""
    spec = get_attack(attack)
    out = check_output_dir(out, overwrite)
    edits = load_edits(edits)
    backbone = load_model(model, edits)
    spec.check(backbone)
    config = spec.config(configs)
    inputs = AttackInputs(list(prompts), list(seeds))
    unedited = load(model) if (spec.needs_targets or spec.needs_reference or spec.transfer_search) else None
    if spec.needs_targets:
        inputs = replace(inputs, targets=generate(unedited, list(prompts), list(seeds), **gen_kwargs))
    if spec.needs_reference:
        inputs = replace(inputs, reference=unedited)
    if spec.transfer_search is not None:
        if backbone.is_toy:
            material = toy_attack_prompts(concept, 1, world_version=backbone.toy_world_version)
            with_, without = material["with"], material["without"]
        else:
            with_, without = concept_pairs(concept)
        inputs = replace(inputs, with_concept=with_, without_concept=without)
        # Searched on the unedited text encoder: the prompts transfer to any erased model that keeps it.
        found = spec.transfer_search(unedited, inputs, concept, config, progress=progress)
        inputs = replace(inputs, transfer_prompts=found)
    with contextlib.ExitStack() as stack:
        if embedding is not None:
            stack.enter_context(loaded_embedding(backbone, embedding))
        result = spec.run(backbone, inputs, judge, concept, config, progress=progress, **gen_kwargs)
    payload = result.to_json() | {"model": model, "edits": [f"{e.method} ({', '.join(e.concepts)})" for e in edits]}
    if embedding is not None:
        payload["embedding"] = str(embedding)
    with atomic_directory(out) as tmp:
        result.save_prompts(tmp / "prompts.csv")
        write_json(tmp / "results.json", payload)
        if result.embedding is not None:
            save_embedding(
                tmp / "embedding.safetensors", result.embedding["token"], result.embedding["vector"], backbone, concept
            )
        if result.images is not None and result.pre_images is not None:
            rows = torch.cat([result.pre_images, result.images])
            image_grid(rows, nrow=len(result.images)).save(tmp / "images.png")
        write_run_record(tmp, "attack", {"attack": attack, "concept": concept})
    return result
