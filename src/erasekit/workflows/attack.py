"""The attack workflow: one attack on an edited model, its prompts replayable, its folder written whole."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch

from ..atomic import atomic_directory, write_json
from ..eval.attacks import (
    AttackInputs,
    AttackResult,
    RingABellConfig,
    UnlearnDiffAtkConfig,
    concept_pairs,
    get_attack,
    ring_a_bell_prompts,
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
    unlearndiffatk: UnlearnDiffAtkConfig | None = None,
    ring_a_bell: RingABellConfig | None = None,
    progress: bool = True,
    overwrite: bool = False,
    **gen_kwargs,
) -> AttackResult:
    """One attack on ``model`` with ``edits`` applied; writes ``<out>/results.json``, the attacked prompts
    (``<out>/prompts.csv``, replayable) and a few image rows (``<out>/images.png``: source above, attacked below).

    ``out`` must be new, or with ``overwrite`` an earlier attack's folder; it is written whole at the end, so an
    interrupted attack leaves the earlier folder as it was."""
    spec = get_attack(attack)
    out = check_output_dir(out, overwrite)
    edits = load_edits(edits)
    backbone = load_model(model, edits)
    spec.check(backbone)
    inputs = AttackInputs(list(prompts), list(seeds))
    if spec.needs_targets:
        inputs = replace(inputs, targets=generate(load(model), list(prompts), list(seeds), **gen_kwargs))
    if spec.needs_ring_prompts:
        if backbone.is_toy:
            material = toy_attack_prompts(concept, 1, world_version=backbone.toy_world_version)
            with_, without = material["with"], material["without"]
        else:
            with_, without = concept_pairs(concept)
        # Searched on the unedited text encoder, as Ring-A-Bell does: the prompts transfer to any erased model.
        found, _ = ring_a_bell_prompts(load(model), prompts, with_, without, concept, ring_a_bell, progress=progress)
        inputs = replace(inputs, ring_prompts=found, with_concept=with_, without_concept=without)
    result = spec.run(
        backbone,
        inputs,
        judge,
        concept,
        unlearndiffatk=unlearndiffatk,
        ring_a_bell=ring_a_bell,
        progress=progress,
        **gen_kwargs,
    )
    payload = result.to_json() | {"model": model, "edits": [f"{e.method} ({', '.join(e.concepts)})" for e in edits]}
    with atomic_directory(out) as tmp:
        result.save_prompts(tmp / "prompts.csv")
        write_json(tmp / "results.json", payload)
        if result.images is not None and result.pre_images is not None:
            rows = torch.cat([result.pre_images, result.images])
            image_grid(rows, nrow=len(result.images)).save(tmp / "images.png")
        write_run_record(tmp, "attack", {"attack": attack, "concept": concept})
    return result
