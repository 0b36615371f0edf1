"""The attack table: every attack by name, what it needs made beforehand, and how to run it on a backbone."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from ...errors import InvalidArgumentError
from .mma import MMAConfig, mma_attack, mma_prompts
from .p4d import P4DConfig, p4d_attack
from .replay import replay_attack
from .results import AttackResult
from .ring_a_bell import RingABellConfig, ring_a_bell_attack, ring_a_bell_prompts
from .textual_inversion import TextualInversionConfig, textual_inversion_attack
from .unlearndiffatk import UnlearnDiffAtkConfig, unlearndiffatk_attack
from .vocabulary import check_attack_family


@dataclass(frozen=True)
class AttackInputs:
    """What an attack starts from besides the model it attacks.

    ``prompts``/``seeds``: the prompts attacked and each one's image seed. ``targets``: the unedited model's images
    of ``prompts`` (for an attack that ``needs_targets``). ``transfer_prompts``: prompts a transfer attack searched
    earlier on the unedited model's text encoder, one per prompt, or ``None`` to search on the attacked model;
    ``with_concept``/``without_concept``: the paired prompts of Ring-A-Bell's concept vector. ``reference``: the
    unedited model (for an attack that ``needs_reference``).
    """

    prompts: Sequence[str]
    seeds: Sequence[int]
    targets: torch.Tensor | None = None
    transfer_prompts: Sequence[str] | None = None
    with_concept: Sequence[str] = ()
    without_concept: Sequence[str] = ()
    reference: Any = None


@dataclass(frozen=True)
class Attack:
    """One attack of ``ATTACK_TABLE``: how to run it against a backbone, and what it needs made beforehand.

    Attributes:
        name: the attack's name (``erasekit attack --attack``, the benchmark's ``attacks``).
        run: ``run(backbone, inputs, judge, concept, config, progress=..., **gen_kwargs)`` → ``AttackResult``.
        config_cls: its config dataclass (``None``: it has no settings); ``config_key`` names it where configs are
            given by attack (the benchmark's config fields, ``run_attack``'s ``configs``).
        family_check: the name ``check_attack_family`` reports for an attack that needs a CLIP-conditioned UNet
            (``None``: any model).
        needs_targets: it needs the unedited model's images of the prompts (``AttackInputs.targets``).
        needs_reference: it needs the unedited model itself (``AttackInputs.reference``).
        transfer_search: for an attack whose prompts depend on the unedited text encoder only (so one search serves
            every erased model that keeps it): ``transfer_search(unedited, inputs, concept, config, progress)`` →
            the prompts, replayed through ``AttackInputs.transfer_prompts``.
        toy_prompts: which list of ``toy_attack_prompts`` it starts from on the toy world: ``target`` (captions
            naming the concept) or ``clean`` (captions without it, to which Ring-A-Bell adds the concept).
        per_model_prompts: its prompts are searched on the attacked model itself, so they differ from model to model.
    """

    name: str
    run: Callable[..., AttackResult]
    config_cls: type | None = None
    config_key: str | None = None
    family_check: str | None = None
    needs_targets: bool = False
    needs_reference: bool = False
    transfer_search: Callable[..., list[str]] | None = None
    toy_prompts: str = "target"
    per_model_prompts: bool = False

    def check(self, backbone) -> None:
        """Refuse a backbone the attack cannot run on (``UnsupportedModelError``), before any work."""
        if self.family_check is not None:
            check_attack_family(backbone, self.family_check)

    def config(self, configs: dict[str, Any] | None = None):
        """Its config from ``configs`` (keyed by ``config_key``), else its defaults; ``None`` without settings."""
        if self.config_cls is None:
            return None
        given = (configs or {}).get(self.config_key)
        if given is None:
            return self.config_cls()
        if not isinstance(given, self.config_cls):
            raise TypeError(f"the {self.name} attack takes a {self.config_cls.__name__}, not {type(given).__name__}")
        return given


def _run_replay(backbone, inputs: AttackInputs, judge, concept: str, config=None, progress=True, **gen_kwargs):
    return replay_attack(backbone, inputs.prompts, inputs.seeds, judge, concept, **gen_kwargs)


def _run_unlearndiffatk(backbone, inputs: AttackInputs, judge, concept: str, config=None, progress=True, **gen_kwargs):
    if inputs.targets is None:
        raise ValueError("the UnlearnDiffAtk attack needs the unedited model's images of its prompts (targets)")
    return unlearndiffatk_attack(
        backbone, inputs.prompts, inputs.seeds, inputs.targets, judge, concept, config, progress=progress, **gen_kwargs
    )


def _search_ring_a_bell(unedited, inputs: AttackInputs, concept: str, config, progress=True) -> list[str]:
    found, _ = ring_a_bell_prompts(
        unedited, inputs.prompts, inputs.with_concept, inputs.without_concept, concept, config, progress=progress
    )
    return found


def _run_ring_a_bell(backbone, inputs: AttackInputs, judge, concept: str, config=None, progress=True, **gen_kwargs):
    return ring_a_bell_attack(
        backbone,
        inputs.prompts,
        inputs.seeds,
        judge,
        concept,
        with_concept=inputs.with_concept,
        without_concept=inputs.without_concept,
        config=config,
        prompts=inputs.transfer_prompts,
        progress=progress,
        **gen_kwargs,
    )


def _search_mma(unedited, inputs: AttackInputs, concept: str, config, progress=True) -> list[str]:
    return mma_prompts(unedited, inputs.prompts, concept, config, progress=progress)[0]


def _run_mma(backbone, inputs: AttackInputs, judge, concept: str, config=None, progress=True, **gen_kwargs):
    return mma_attack(
        backbone,
        inputs.prompts,
        inputs.seeds,
        judge,
        concept,
        config=config,
        prompts=inputs.transfer_prompts,
        progress=progress,
        **gen_kwargs,
    )


def _against_reference(attack, what: str, prepare=None):
    """The runner of a white-box attack that reads the unedited model and its images of the prompts:
    ``attack(backbone, reference, prompts, seeds, targets, judge, concept, config, ...)``; ``prepare(config)``
    fixes the config first (P4D's variant)."""

    def run(backbone, inputs: AttackInputs, judge, concept: str, config=None, progress=True, **gen_kwargs):
        if inputs.targets is None or inputs.reference is None:
            raise ValueError(f"{what} needs the unedited model (reference) and its images of the prompts (targets)")
        return attack(
            backbone,
            inputs.reference,
            inputs.prompts,
            inputs.seeds,
            inputs.targets,
            judge,
            concept,
            prepare(config) if prepare else config,
            progress=progress,
            **gen_kwargs,
        )

    return run


def _p4d(variant: str) -> Attack:
    return Attack(
        f"p4d-{variant}",
        _against_reference(p4d_attack, "P4D", lambda config: replace(config or P4DConfig(), variant=variant)),
        config_cls=P4DConfig,
        config_key="p4d",
        family_check="P4D",
        needs_targets=True,
        needs_reference=True,
        per_model_prompts=True,
    )


ATTACK_TABLE: dict[str, Attack] = {
    attack.name: attack
    for attack in (
        Attack("replay", _run_replay),
        Attack(
            "unlearndiffatk",
            _run_unlearndiffatk,
            config_cls=UnlearnDiffAtkConfig,
            config_key="unlearndiffatk",
            family_check="UnlearnDiffAtk-style",
            needs_targets=True,
            per_model_prompts=True,
        ),
        Attack(
            "ring-a-bell",
            _run_ring_a_bell,
            config_cls=RingABellConfig,
            config_key="ring_a_bell",
            family_check="Ring-A-Bell-style",
            transfer_search=_search_ring_a_bell,
            toy_prompts="clean",
        ),
        Attack(
            "mma",
            _run_mma,
            config_cls=MMAConfig,
            config_key="mma",
            family_check="MMA-Diffusion",
            transfer_search=_search_mma,
        ),
        _p4d("n"),
        _p4d("k"),
        Attack(
            "textual-inversion",
            _against_reference(textual_inversion_attack, "textual inversion"),
            config_cls=TextualInversionConfig,
            config_key="textual_inversion",
            family_check="textual inversion",
            needs_targets=True,
            needs_reference=True,
            per_model_prompts=True,
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
