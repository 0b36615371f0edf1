"""The benchmark runner: erase each concept with each method, evaluate, attack, and report.

``run_bench`` fills a grid of cells (method x concept). A cell goes through stages — ``erase`` (the Edit is
saved under ``<out>/edits/``), ``toy`` (the toy suite) and ``attack`` (the attacks of
:mod:`erasekit.eval.attacks`) — and ``<out>/results.json`` is rewritten atomically after every stage, so a
killed run loses at most the stage it was in, and a rerun skips every finished stage. A stage that fails is
recorded with its error (the run goes on with the next cell) and is retried by the next run.

The unedited model gets a cell of its own (method ``none``) in the attack suite: an attack's success rate on
an erased model means little without the same rate on the model before erasure.
"""

from __future__ import annotations

import json
import logging
import math
import time
import traceback
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..atomic import atomic_path, write_json
from ..errors import ErasekitError, InvalidArgumentError
from ..eval import provenance
from ..eval.attacks import (
    ATTACK_TABLE,
    Attack,
    AttackInputs,
    MMAConfig,
    P4DConfig,
    RingABellConfig,
    TextualInversionConfig,
    UnlearnDiffAtkConfig,
    get_attack,
    save_embedding,
    save_prompts_csv,
    toy_attack_prompts,
)
from ..eval.report import svg_bars, svg_scatter, write_html_report

logger = logging.getLogger(__name__)

SUITES = ("toy", "attack")
ATTACKS = ("unlearndiffatk", "ring-a-bell")  # the attack suite's default: a subset of eval.attacks.ATTACK_TABLE
BASELINE = "none"  # the unedited model's cell in the attack suite


@dataclass
class BenchConfig:
    """One benchmark: the grid, the suites and their sizes.

    Args:
        model: a toy model name (the toy and attack suites judge with the toy classifier).
        methods: erasure methods (``erasekit methods``); one cell per method and concept.
        concepts: concepts to erase, one at a time.
        suites: ``toy`` (erasure and preservation) and/or ``attack`` (attack success rates).
        out: the output folder: ``results.json``, ``report.html``, ``edits/``, ``images/``, ``attacks/``.
        n: prompts per group of the toy suite (the neighbour group gets ``n // 2``).
        n_attack: prompts attacked per cell and attack.
        attacks: which attacks of ``eval.attacks.ATTACK_TABLE`` the attack suite runs (default ``ATTACKS``).
        settings: per-method settings, ``{"abo": {"steps": 100}}``, as ``erasekit erase --set`` takes them.
        seed: seeds erasure, prompt sets and attacks.
        unlearndiffatk, ring_a_bell, mma, p4d, textual_inversion: the attacks' configs (``p4d`` serves P4D-N and
            P4D-K).
    """

    model: str
    methods: list[str]
    concepts: list[str]
    out: str
    suites: list[str] = field(default_factory=lambda: list(SUITES))
    n: int = 40
    n_attack: int = 12
    attacks: list[str] = field(default_factory=lambda: list(ATTACKS))
    settings: dict[str, dict] = field(default_factory=dict)
    seed: int = 0
    unlearndiffatk: UnlearnDiffAtkConfig = field(default_factory=UnlearnDiffAtkConfig)
    ring_a_bell: RingABellConfig = field(default_factory=RingABellConfig)
    mma: MMAConfig = field(default_factory=MMAConfig)
    p4d: P4DConfig = field(default_factory=P4DConfig)
    textual_inversion: TextualInversionConfig = field(default_factory=TextualInversionConfig)

    def __post_init__(self):
        for name, cls in _ATTACK_CONFIGS.items():
            if isinstance(getattr(self, name), dict):
                setattr(self, name, cls(**getattr(self, name)))
        for name, values in (("methods", self.methods), ("concepts", self.concepts), ("suites", self.suites)):
            if not values:
                raise InvalidArgumentError(f"the benchmark needs at least one of {name}")
        unknown = [s for s in self.suites if s not in SUITES]
        if unknown:
            raise InvalidArgumentError(f"unknown suite(s) {', '.join(unknown)}; choose from {', '.join(SUITES)}")
        unknown = [a for a in self.attacks if a not in ATTACK_TABLE]
        if unknown:
            raise InvalidArgumentError(f"unknown attack(s) {', '.join(unknown)}; choose from {', '.join(ATTACK_TABLE)}")
        if self.n < 2 or self.n_attack < 1:
            raise InvalidArgumentError("n must be at least 2 and n_attack at least 1")

    def identity(self) -> dict:
        """What must match for an earlier run's cells to be reused."""
        return {
            "model": self.model,
            "n": self.n,
            "n_attack": self.n_attack,
            "seed": self.seed,
            "settings": self.settings,
            "unlearndiffatk": asdict(self.unlearndiffatk),
            "ring_a_bell": asdict(self.ring_a_bell),
        } | {  # the newer attacks' configs only where they run: earlier benchmarks stay resumable
            key: asdict(getattr(self, key))
            for key in _ATTACK_CONFIGS
            if key not in ("unlearndiffatk", "ring_a_bell")
            if any(ATTACK_TABLE[a].config_key == key for a in self.attacks)
        }

    def attack_config(self, spec: Attack):
        """The config this benchmark runs ``spec`` with (``None`` for an attack without settings)."""
        return getattr(self, spec.config_key) if spec.config_key else None


# BenchConfig's field per attack config (``Attack.config_key``) and its class.
_ATTACK_CONFIGS = {a.config_key: a.config_cls for a in ATTACK_TABLE.values() if a.config_key}


def cell_key(method: str, concept: str) -> str:
    return f"{method}/{concept}"


class Bench:
    """State of one benchmark folder: ``results.json`` and the files beside it."""

    def __init__(self, config: BenchConfig):
        self.config = config
        self.out = Path(config.out)
        self.results_path = self.out / "results.json"
        self.results = self._load()

    # ---------------------------------------------------------------------------------------- storage

    def _load(self) -> dict:
        if not self.results_path.exists():
            return {"identity": self.config.identity(), "cells": {}}
        try:
            results = json.loads(self.results_path.read_text())
        except json.JSONDecodeError as e:
            raise ErasekitError(f"{self.results_path} is not valid JSON ({e}); move it away to start afresh") from None
        if results.get("identity") != self.config.identity():
            raise ErasekitError(
                f"{self.results_path} was made with other settings ({results.get('identity')}); use another --out "
                "or the same settings to resume"
            )
        return results

    def save(self) -> None:
        self.results["config"] = asdict(self.config)
        self.results["provenance"] = self.provenance()
        write_json(self.results_path, self.results)

    def cell(self, method: str, concept: str) -> dict:
        return self.results["cells"].setdefault(
            cell_key(method, concept), {"method": method, "concept": concept, "stages": {}}
        )

    def images_path(self, method: str, concept: str) -> Path:
        return self.out / "images" / f"{method}-{concept}.safetensors"

    def save_images(self, method: str, concept: str, tensors: dict[str, torch.Tensor]) -> None:
        path = self.images_path(method, concept)
        existing = load_file(path) if path.exists() else {}
        existing.update({k: v.detach().float().cpu().contiguous() for k, v in tensors.items() if v is not None})
        with atomic_path(path) as tmp:
            save_file(existing, tmp)

    @cached_property
    def _sampling(self) -> dict:
        from ..models import load

        return provenance.sampling(load(self.config.model))

    def provenance(self) -> dict:
        info = provenance.environment() | self._sampling
        from ..models import toy_world_version

        info["judge"] = provenance.toy_judge(toy_world_version(self.config.model) or 1)
        info["seed"] = self.config.seed
        info["attack_success_rate"] = (
            "share of attacked prompts (one image each, at the prompt's seed) in which the judge finds the concept"
        )
        return info


# ------------------------------------------------------------------------------------------------ stages


def _stage(bench: Bench, cell: dict, name: str, fn) -> bool:
    """Run one stage unless it is done; record its result or its error. Returns whether it is done."""
    stages = cell["stages"]
    if stages.get(name, {}).get("status") == "done":
        return True
    start = time.time()
    try:
        payload = fn() or {}
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:  # one failing cell must not cost the others; the error is kept and shown
        logger.error("bench: %s %s failed: %s", cell_key(cell["method"], cell["concept"]), name, e)
        stages[name] = {
            "status": "failed",
            "error": f"{type(e).__name__}: {e}",
            "traceback": traceback.format_exc(limit=6),
        }
        bench.save()
        return False
    stages[name] = {"status": "done", "seconds": round(time.time() - start, 1)} | payload
    bench.save()
    return True


def _edit_dir(bench: Bench, method: str, concept: str) -> Path:
    return bench.out / "edits" / f"{method}-{concept}"


def _erase_stage(bench: Bench, method: str, concept: str) -> dict:
    from ..edits import Edit
    from .erase import erase

    folder = _edit_dir(bench, method, concept)
    if folder.exists():
        try:
            Edit.load(folder)
            return {"edit": str(folder), "reused": True}
        except ErasekitError:
            pass  # a broken folder from a killed run: make it again
    workdir = Path(f"{folder}.work")
    start = time.time()
    erase(
        bench.config.model,
        method,
        [concept],
        folder,
        settings=dict(bench.config.settings.get(method, {})),
        seed=bench.config.seed,
        overwrite=True,
        resume=workdir.exists(),
    )
    return {"edit": str(folder), "erase_seconds": round(time.time() - start, 1)}


def _toy_stage(bench: Bench, method: str, concept: str) -> dict:
    from ..eval.toy_suite import ToySuiteConfig
    from .evaluate import evaluate_toy

    n = bench.config.n
    config = ToySuiteConfig(
        concept=concept, n_target=n, n_synonym=n, n_preserve=n, n_neighbour=n // 2, seed=bench.config.seed
    )
    result = evaluate_toy(bench.config.model, concept, [_edit_dir(bench, method, concept)], config, progress=False)
    if result.images:
        bench.save_images(method, concept, {"toy_base": result.images["base"], "toy_edited": result.images["edited"]})
    return {"metrics": result.to_json()["metrics"], "image_prompts": result.image_prompts, "n_images": result.n_images}


class _AttackMaterial:
    """What every cell of one concept attacks with: prompts, seeds, the unedited model's target images and the
    Ring-A-Bell prompts (searched once on the unedited model's text encoder, then replayed on every model)."""

    def __init__(self, bench: Bench, concept: str):
        from ..generate import generate
        from ..models import load, toy_world_version

        self.material = toy_attack_prompts(
            concept, bench.config.n_attack, seed=bench.config.seed, world_version=toy_world_version(bench.config.model)
        )
        folder = bench.out / "attacks"
        folder.mkdir(parents=True, exist_ok=True)
        attacks = [get_attack(name) for name in bench.config.attacks]
        targets_path = folder / f"targets-{concept}.safetensors"
        base = None
        self.targets = None
        if any(a.needs_targets for a in attacks):
            if targets_path.exists():
                self.targets = load_file(targets_path)["images"]
            else:
                base = load(bench.config.model)
                self.targets = generate(base, self.material["target"], self.material["seeds"])
                with atomic_path(targets_path) as tmp:  # a run killed mid-write must not leave a cut-short cache
                    save_file({"images": self.targets.contiguous()}, tmp)
        # Transfer attacks search once on the unedited model's text encoder; every model of the concept replays them.
        self.transfer_prompts: dict[str, list[str]] = {}
        for spec in attacks:
            if spec.transfer_search is None:
                continue
            path = folder / f"{spec.name}-{concept}.csv"
            sources = self.material[spec.toy_prompts]
            if path.exists():
                from ..prompt_sets import load_prompt_set

                self.transfer_prompts[spec.name] = load_prompt_set("csv", path).prompts
                continue
            base = base or load(bench.config.model)
            inputs = AttackInputs(
                sources,
                self.material["seeds"],
                with_concept=self.material["with"],
                without_concept=self.material["without"],
            )
            found = spec.transfer_search(base, inputs, concept, bench.config.attack_config(spec), progress=False)
            self.transfer_prompts[spec.name] = found
            save_prompts_csv(path, spec.name, found, self.material["seeds"], sources)


def _attack_stage(bench: Bench, method: str, concept: str, material: _AttackMaterial) -> dict:
    from ..judges import ToyJudge
    from ..methods import load_model
    from ..models import load

    edits = [] if method == BASELINE else [_edit_dir(bench, method, concept)]
    backbone = load_model(bench.config.model, edits)
    reference = None
    judge = ToyJudge(world_version=backbone.toy_world_version)
    m = material.material
    out, images = {}, {}
    for attack in bench.config.attacks:
        spec = get_attack(attack)
        if spec.needs_reference and reference is None:
            reference = load(bench.config.model)
        inputs = AttackInputs(
            m[spec.toy_prompts],
            m["seeds"],
            targets=material.targets,
            transfer_prompts=material.transfer_prompts.get(attack),
            with_concept=m["with"],
            without_concept=m["without"],
            reference=reference,
        )
        result = spec.run(backbone, inputs, judge, concept, bench.config.attack_config(spec), progress=False)
        if spec.per_model_prompts:  # the others' prompts are the same for every model of the concept
            result.save_prompts(bench.out / "attacks" / f"{attack}-{method}-{concept}.csv")
        if result.embedding is not None:
            save_embedding(
                bench.out / "attacks" / f"{attack}-{method}-{concept}.safetensors",
                result.embedding["token"],
                result.embedding["vector"],
                backbone,
                concept,
            )
        out[attack] = result.to_json()
        images[f"attack_{attack}"] = result.images
        images[f"attack_{attack}_pre"] = result.pre_images
    bench.save_images(method, concept, images)
    return {"attacks": out, "worst_case": worst_case(out)}


def worst_case(attacks: dict[str, dict]) -> dict:
    """The largest attack success rate over the attacks run (the number a user should quote for the edit), and
    the attack that reached it; NaN rates (no prompts) are skipped."""
    rates = {
        name: data["metrics"]["attack_success_rate"]
        for name, data in attacks.items()
        if data["metrics"]["attack_success_rate"] is not None and not math.isnan(data["metrics"]["attack_success_rate"])
    }
    if not rates:
        return {"asr": None, "attack": None, "over": sorted(attacks)}
    attack = max(rates, key=lambda name: (rates[name], name))
    return {"asr": rates[attack], "attack": attack, "over": sorted(attacks)}


# -------------------------------------------------------------------------------------------------- runner


def run_bench(config: BenchConfig, progress: bool = True, log=print) -> dict:
    """Fill every cell of the benchmark (skipping finished stages), then write ``report.html``.

    Returns the results (also in ``<out>/results.json``).
    """
    from ..methods import get_method
    from ..models import load
    from ..progress import progress_bar
    from .erase import check_concepts

    # Every bad name fails here, before an hour of work, not in the middle of it.
    backbone = load(config.model)
    if not backbone.is_toy:
        raise ErasekitError(
            f"the benchmark's suites judge with the toy classifier: use a toy model, not {config.model}"
        )
    for method in config.methods:
        if method != BASELINE:
            get_method(method).check_family(backbone.family)
    check_concepts(backbone, config.concepts)
    if "attack" in config.suites:
        for name in config.attacks:
            get_attack(name).check(backbone)
    del backbone

    bench = Bench(config)
    bench.out.mkdir(parents=True, exist_ok=True)
    bench.save()
    methods = list(config.methods) + ([BASELINE] if "attack" in config.suites else [])
    total = len(methods) * len(config.concepts)
    with progress_bar("bench", total, disable=not progress) as bar:
        for concept in config.concepts:
            material = None
            for method in methods:
                cell = bench.cell(method, concept)
                label = cell_key(method, concept)
                if method != BASELINE:
                    if not _stage(bench, cell, "erase", lambda: _erase_stage(bench, method, concept)):
                        log(f"{label}: erase failed: {cell['stages']['erase']['error']}")
                        bar.advance()
                        continue
                    if "toy" in config.suites:
                        _stage(bench, cell, "toy", lambda: _toy_stage(bench, method, concept))
                if "attack" in config.suites:
                    if cell["stages"].get("attack", {}).get("status") != "done" and material is None:
                        material = _AttackMaterial(bench, concept)
                    _stage(bench, cell, "attack", lambda: _attack_stage(bench, method, concept, material))
                failed = [s for s, v in cell["stages"].items() if v.get("status") == "failed"]
                log(f"{label}: " + ("done" if not failed else f"failed stage(s): {', '.join(failed)}"))
                bar.advance()
    write_bench_report(bench)
    return bench.results


# -------------------------------------------------------------------------------------------------- report


def summary_rows(results: dict) -> list[dict]:
    """One row per cell: the toy suite's headline metrics, the attack success rates, the erase time."""
    rows = []
    for cell in results["cells"].values():
        stages = cell["stages"]
        metrics = dict(stages.get("toy", {}).get("metrics") or {})
        for attack, data in (stages.get("attack", {}).get("attacks") or {}).items():
            metrics[f"asr_{attack}"] = data["metrics"]["attack_success_rate"]
            metrics[f"pre_attack_rate_{attack}"] = data["metrics"]["pre_attack_rate"]
        if "worst_case" in stages.get("attack", {}):
            metrics["asr_worst_case"] = stages["attack"]["worst_case"]["asr"]
        erase = stages.get("erase", {})
        if "erase_seconds" in erase:
            metrics["erase_seconds"] = erase["erase_seconds"]
        failed = [f"{s}: {v.get('error')}" for s, v in stages.items() if v.get("status") == "failed"]
        row = {
            "method": cell["method"],
            "concept": cell["concept"],
            "metrics": {k: (math.nan if v is None else v) for k, v in metrics.items()},
        }
        if failed:
            row["failed"] = failed
        rows.append(row)
    return rows


def write_bench_report(bench: Bench) -> Path:
    """``<out>/report.html``: metric table, plots, before/after grids per cell, provenance."""
    results = bench.results
    rows = summary_rows(results)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    concepts = list(dict.fromkeys(r["concept"] for r in rows))
    sections = []
    scatter = [
        (r["method"], r["concept"], r["metrics"].get("erasure_rate"), r["metrics"].get("preserve_acc"))
        for r in rows
        if r["method"] != BASELINE and "erasure_rate" in r["metrics"]
    ]
    plots = []
    if scatter:
        plots.append(
            svg_scatter(
                scatter,
                "Erasure vs preservation (toy suite)",
                "erasure rate (target prompts)",
                "preserve accuracy (other prompts)",
            )
        )
    for attack in (*bench.config.attacks, "worst_case"):
        key = f"asr_{attack}"
        if any(key in r["metrics"] for r in rows):
            series = {
                c: [
                    next((r["metrics"].get(key) for r in rows if r["method"] == m and r["concept"] == c), None)
                    for m in methods
                ]
                for c in concepts
            }
            title = (
                "Worst-case attack success rate (the largest over the attacks)" if attack == "worst_case" else attack
            )
            plots.append(svg_bars(methods, series, f"Attack success rate: {title}", "attack success rate"))
    if plots:
        sections.append(("Plots", f'<div class="plots">{"".join(plots)}</div>'))
    failures = [f"{r['method']}/{r['concept']}: {f}" for r in rows for f in r.get("failed", [])]
    if failures:
        from html import escape

        sections.append(("Failed stages", "<ul>" + "".join(f"<li>{escape(f)}</li>" for f in failures) + "</ul>"))

    grids = []
    for r in rows:
        path = bench.images_path(r["method"], r["concept"])
        if not path.exists():
            continue
        images = load_file(path)
        cell = results["cells"][cell_key(r["method"], r["concept"])]
        if "toy_base" in images:
            captions = cell["stages"]["toy"].get("image_prompts", [])
            grids.append(
                (
                    f"{r['method']} / {r['concept']}: toy suite (unedited above, edited below)",
                    images["toy_base"],
                    images["toy_edited"],
                    captions,
                )
            )
        for attack in bench.config.attacks:
            if f"attack_{attack}" in images:
                items = cell["stages"]["attack"]["attacks"][attack]["items"]
                grids.append(
                    (
                        f"{r['method']} / {r['concept']}: {attack} (source prompt above, attacked below)",
                        images.get(f"attack_{attack}_pre"),
                        images[f"attack_{attack}"],
                        [it["source_prompt"] for it in items],
                        [it["prompt"] for it in items],
                    )
                )
    return write_html_report(
        bench.out / "report.html",
        f"erasekit bench: {bench.config.model}",
        rows,
        grids,
        provenance=results.get("provenance", {}) | {"config": bench.config.identity()},
        sections=sections,
    )
