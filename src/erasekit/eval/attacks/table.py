"""The attack table: every attack by name, what it needs made beforehand, and how to run it on a backbone."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ...errors import InvalidArgumentError
from .replay import replay_attack
from .results import AttackResult
from .ring_a_bell import ring_a_bell_attack
from .unlearndiffatk import unlearndiffatk_attack
from .vocabulary import check_attack_family


@dataclass(frozen=True)
class AttackInputs:
    """What an attack starts from besides the model it attacks.

    ``prompts``/``seeds``: the prompts attacked and each one's image seed. ``targets``: the unedited model's images
    of ``prompts`` (for an attack that ``needs_targets``). ``ring_prompts``: Ring-A-Bell prompts searched earlier on
    the unedited model's text encoder, one per prompt, or ``None`` to search on the attacked model;
    ``with_concept``/``without_concept``: the paired prompts of that search's concept vector.
    """

    prompts: Sequence[str]
    seeds: Sequence[int]
    targets: torch.Tensor | None = None
    ring_prompts: Sequence[str] | None = None
    with_concept: Sequence[str] = ()
    without_concept: Sequence[str] = ()


@dataclass(frozen=True)
class Attack:
    """One attack of ``ATTACK_TABLE``: how to run it against a backbone, and what it needs made beforehand.

    Attributes:
        name: the attack's name (``erasekit attack --attack``, the benchmark's ``attacks``).
        run: ``run(backbone, inputs, judge, concept, *, unlearndiffatk, ring_a_bell, progress, **gen_kwargs)``
            → ``AttackResult``; it takes the config of its own kind and ignores the other.
        family_check: the name ``check_attack_family`` reports for an attack that needs a CLIP-conditioned UNet
            (``None``: any model).
        needs_targets: it needs the unedited model's images of the prompts (``AttackInputs.targets``).
        needs_ring_prompts: it replays Ring-A-Bell prompts searched on the unedited model's text encoder, which
            transfer to every model that keeps it (``AttackInputs.ring_prompts``).
        toy_prompts: which list of ``toy_attack_prompts`` it starts from on the toy world: ``target`` (captions
            naming the concept) or ``clean`` (captions without it, to which Ring-A-Bell adds the concept).
        per_model_prompts: its prompts are searched on the attacked model itself, so they differ from model to model.
    """

    name: str
    run: Callable[..., AttackResult]
    family_check: str | None = None
    needs_targets: bool = False
    needs_ring_prompts: bool = False
    toy_prompts: str = "target"
    per_model_prompts: bool = False

    def check(self, backbone) -> None:
        """Refuse a backbone the attack cannot run on (``UnsupportedModelError``), before any work."""
        if self.family_check is not None:
            check_attack_family(backbone, self.family_check)


def _run_replay(
    backbone,
    inputs: AttackInputs,
    judge,
    concept: str,
    *,
    unlearndiffatk=None,
    ring_a_bell=None,
    progress: bool = True,
    **gen_kwargs,
) -> AttackResult:
    return replay_attack(backbone, inputs.prompts, inputs.seeds, judge, concept, **gen_kwargs)


def _run_unlearndiffatk(
    backbone,
    inputs: AttackInputs,
    judge,
    concept: str,
    *,
    unlearndiffatk=None,
    ring_a_bell=None,
    progress: bool = True,
    **gen_kwargs,
) -> AttackResult:
    if inputs.targets is None:
        raise ValueError("the UnlearnDiffAtk attack needs the unedited model's images of its prompts (targets)")
    return unlearndiffatk_attack(
        backbone,
        inputs.prompts,
        inputs.seeds,
        inputs.targets,
        judge,
        concept,
        unlearndiffatk,
        progress=progress,
        **gen_kwargs,
    )


def _run_ring_a_bell(
    backbone,
    inputs: AttackInputs,
    judge,
    concept: str,
    *,
    unlearndiffatk=None,
    ring_a_bell=None,
    progress: bool = True,
    **gen_kwargs,
) -> AttackResult:
    return ring_a_bell_attack(
        backbone,
        inputs.prompts,
        inputs.seeds,
        judge,
        concept,
        with_concept=inputs.with_concept,
        without_concept=inputs.without_concept,
        config=ring_a_bell,
        prompts=inputs.ring_prompts,
        progress=progress,
        **gen_kwargs,
    )


ATTACK_TABLE: dict[str, Attack] = {
    attack.name: attack
    for attack in (
        Attack("replay", _run_replay),
        Attack(
            "unlearndiffatk",
            _run_unlearndiffatk,
            family_check="UnlearnDiffAtk-style",
            needs_targets=True,
            per_model_prompts=True,
        ),
        Attack(
            "ring-a-bell",
            _run_ring_a_bell,
            family_check="Ring-A-Bell-style",
            needs_ring_prompts=True,
            toy_prompts="clean",
        ),
    )
}
ATTACKS = tuple(ATTACK_TABLE)


def get_attack(name: str) -> Attack:
    """The attack called ``name``; an ``InvalidArgumentError`` (a ``ValueError``) naming the known ones otherwise."""
    try:
        return ATTACK_TABLE[name]
    except KeyError:
        raise InvalidArgumentError(f"unknown attack {name!r}; choose one of {', '.join(ATTACKS)}") from None
