"""The contract every registered erasure method keeps, checked for each one on tiny random models built in code.

In the style of peft's ``PeftCommonTester`` and diffusers' ``PipelineTesterMixin``: one table, ``CASES``, gives each
registered method (aliases such as ``esd`` included) the tiny settings that make it run in well under a second,
and every test below runs for every method on every family it supports (``method.families``):

1. **Round trip.** ``erase`` → save → ``Edit.load`` gives back the same tensors and manifest. An inference-control or
   mask edit, applied and then removed, leaves the pipeline exactly as it was: the same images bit for bit
   (``torch.equal``), every parameter and buffer of every component unchanged, and the same attributes (the
   edit's ``PipelineState`` is its one attribute, gone once it is removed). A weight delta cannot be
   removed; the loaded edit applied to a fresh pipeline gives bit-identical parameters to the in-memory edit.
2. **Wrong family refused.** ``erase`` on a family the method does not support raises ``UnsupportedModelError``
   (before any work, writing nothing), and an edit made on one family is refused (``InvalidEditError``) by a
   pipeline of the other, which it leaves untouched.
3. **Unknown setting refused.** ``settings={"no_such_setting": ...}`` (the CLI's ``--set``) raises
   ``InvalidSettingError`` naming the key, and nothing is written to ``out``.
4. **Seeds.** The same ``seed`` twice gives the same edit (tensors, config and data, apart from timing fields);
   another seed changes the edit's tensors for every method that draws random numbers (``seeded=True``), and
   leaves the edit identical for those that draw none (``seeded=False``).

A method registered without an entry in ``CASES`` fails ``test_every_registered_method_has_a_contract_entry``.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch

import erasekit.api as ek
from erasekit.config import InvalidSettingError
from erasekit.edits import Edit
from erasekit.errors import InvalidEditError, UnsupportedModelError
from erasekit.generate import generate
from erasekit.methods import apply_edit, available_methods, get_method, remove_edit
from erasekit.models import from_pipeline
from erasekit.pipeline_state import STATE_ATTR
from erasekit.toy.pipelines import tiny_flux_pipeline, tiny_sd_pipeline

FAMILIES = ("sd", "flux")
TARGET = ["star"]
# Keys of ``edit.data`` (at any depth) that measure time, not the result: they may differ between equal runs.
TIMING_KEYS = frozenset({"seconds"})


@dataclass(frozen=True)
class Case:
    """One method's entry in the contract: the tiny settings it runs with and what to expect of it.

    Attributes:
        method: the registered name.
        settings: the ``settings`` (``--set``) dict that makes it fast on a tiny model.
        request: extra ``ek.erase`` keywords (``anchor``); every case erases ``TARGET`` preserving ``circle``.
        seeded: whether the method draws random numbers, so that another seed must change its edit.
        other_seed_xfail: the reason "another seed changes the edit" is known to fail, if it is.
        needs_clip: the settings name the ``tiny_clip`` judge folder (filled in as ``judge_path``).
    """

    method: str
    settings: dict[str, Any]
    request: dict[str, Any] = field(default_factory=dict)
    seeded: bool = True
    other_seed_xfail: str | None = None
    needs_clip: bool = False


FINE_TUNING = {"steps": 2, "batch_size": 1, "lr": 1e-3}
ESD = FINE_TUNING | {"sample_steps": 2}
MCE = {"steps": 2, "sampler_steps": 2, "batch_size": 2, "init_logit": 0.1}

# The table. Keys are test ids; a method may have several entries (GIE with a fixed scale, and with its adapter).
CASES: dict[str, Case] = {
    "abo": Case(
        "abo", FINE_TUNING | {"trajectories": 2, "sample_steps": 2, "keep_weight": 1.0}, request={"anchor": "square"}
    ),
    "erasediff": Case("erasediff", FINE_TUNING | {"num_forget": 2, "num_remain": 2, "generation_steps": 2}),
    "esd": Case("esd", ESD),
    "esd-u": Case("esd-u", ESD),
    "esd-x": Case("esd-x", ESD),
    # A fixed scale: no adapter, nothing random (the edit is the settings).
    "gie": Case("gie", {"scale": -4.0}, seeded=False),
    # The adapter trained on labels from a tiny random CLIP judge: the labelling images and the adapter's
    # initialisation follow the seed.
    "gie-adapter": Case(
        "gie",
        {
            "train_prompts": 2,
            "scale_grid": [-1.0, -2.0],
            "epochs": 20,
            "lr": 0.05,
            "hidden": [8],
            "num_inference_steps": 2,
            "judge": "clip",
        },
        needs_clip=True,
    ),
    "mce": Case("mce", MCE),
    # The edit is the negative prompt: no randomness at all.
    "negprompt": Case("negprompt", {}, seeded=False),
    # Guidance from the first step (the presets' warm-up outlasts the contract's 2-step images); nothing random.
    "sld": Case("sld", {"sld_warmup_steps": 0}, seeded=False),
    # A closed form: nothing random (on toy models the workflow's preservation prompts follow the seed).
    "uce": Case("uce", {}, seeded=False),
}


def _params(case_id: str, family: str):
    return pytest.param(case_id, family, id=f"{case_id}-{family}")


def _cases(kinds: tuple[str, ...] | None = None) -> list:
    """Every (case, family) pair, a family for each of the method's ``families``; only ``kinds`` if given."""
    out = []
    for case_id, case in CASES.items():
        method = get_method(case.method)
        if kinds is None or method.kind in kinds:
            out += [_params(case_id, family) for family in method.families]
    return out


def _other_seed_cases() -> list:
    out = []
    for case_id, case in CASES.items():
        if not case.seeded:
            continue
        for family in get_method(case.method).families:
            marks = [pytest.mark.xfail(strict=True, reason=case.other_seed_xfail)] if case.other_seed_xfail else []
            out.append(pytest.param(case_id, family, id=f"{case_id}-{family}", marks=marks))
    return out


def _unseeded_cases() -> list:
    return [
        pytest.param(case_id, family, id=f"{case_id}-{family}")
        for case_id, case in CASES.items()
        if not case.seeded
        for family in get_method(case.method).families
    ]


def _backbone(family: str):
    pipeline = tiny_sd_pipeline(seed=0) if family == "sd" else tiny_flux_pipeline(seed=0)
    return from_pipeline(pipeline, name=f"tiny-{family}")


def _settings(case: Case, request) -> dict[str, Any]:
    settings = dict(case.settings)
    if case.needs_clip:
        settings["judge_path"] = str(request.getfixturevalue("tiny_clip"))
    return settings


def _erase(case: Case, family: str, request, seed: int = 0, out=None, settings=None, backbone=None) -> Edit:
    return ek.erase(
        backbone or _backbone(family),
        case.method,
        TARGET,
        out,
        preserve=["circle"],
        settings=_settings(case, request) if settings is None else settings,
        seed=seed,
        **case.request,
    )


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """``made(case_id, family, request, seed=0, run=0)``: (a copy of the edit, the folder ``erase`` saved it to).

    Each (case, family, seed, run) is erased once per module; ``run`` tells apart two independent runs with the
    same seed.
    """
    cache: dict[tuple, tuple[Edit, Any]] = {}

    def make(case_id: str, family: str, request, seed: int = 0, run: int = 0):
        key = (case_id, family, seed, run)
        if key not in cache:
            out = tmp_path_factory.mktemp(f"{case_id}-{family}-seed{seed}-run{run}") / "edit"
            cache[key] = (_erase(CASES[case_id], family, request, seed=seed, out=out), out)
        edit, out = cache[key]
        return copy.deepcopy(edit), out

    return make


def _state(pipeline) -> dict[str, torch.Tensor]:
    """Every parameter and buffer of every ``nn.Module`` component, keyed ``<component>.<name>``."""
    state = {}
    for component, module in pipeline.components.items():
        if isinstance(module, torch.nn.Module):
            state |= {f"{component}.{n}": p.detach().clone() for n, p in module.named_parameters()}
            state |= {f"{component}.buffer:{n}": b.detach().clone() for n, b in module.named_buffers()}
    return state


def _assert_same_state(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], what: str) -> None:
    assert sorted(got) == sorted(want), f"{what}: the pipeline's parameters are not the same set"
    changed = [k for k in want if got[k].dtype != want[k].dtype or not torch.equal(got[k], want[k])]
    assert not changed, f"{what}: {len(changed)} tensors differ, e.g. {changed[:3]}"


def _images(backbone) -> torch.Tensor:
    # FLUX needs true CFG (guidance > 1) for a negative prompt; used for every FLUX case alike.
    extra = {"guidance_scale": 3.0} if backbone.family == "flux" else {}
    return generate(backbone, ["a photo of star", "a painting of circle"], [0, 1], num_inference_steps=2, **extra)


def _json(value):
    return json.loads(json.dumps(value, default=str))


def _without_timing(value):
    if isinstance(value, dict):
        return {k: _without_timing(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [_without_timing(v) for v in value]
    return value


def _assert_same_tensors(got: Edit, want: Edit, what: str) -> None:
    assert sorted(got.tensors) == sorted(want.tensors), f"{what}: the edits hold different tensors"
    for key, value in want.tensors.items():
        assert got.tensors[key].dtype == value.dtype, f"{what}: {key} changed dtype"
        assert torch.equal(got.tensors[key], value), f"{what}: {key} differs"


def _assert_same_edit(got: Edit, want: Edit, what: str) -> None:
    """The same edit: kind, method, family, concepts, config, tensors, and data apart from timing fields."""
    for attr in ("kind", "method", "family", "concepts", "base_model", "base_weights", "notes"):
        assert _json(getattr(got, attr)) == _json(getattr(want, attr)), f"{what}: {attr} differs"
    assert _json(got.config) == _json(want.config), f"{what}: config differs"
    assert _without_timing(_json(got.data)) == _without_timing(_json(want.data)), f"{what}: data differs"
    _assert_same_tensors(got, want, what)


# ------------------------------------------------------------------------------------------------ the table


def test_every_registered_method_has_a_contract_entry():
    registered = set(available_methods())
    covered = {case.method for case in CASES.values()}
    assert not registered - covered, (
        f"registered methods without tiny settings in CASES: {', '.join(sorted(registered - covered))}; add an entry"
    )
    assert not covered - registered, f"CASES names methods that are not registered: {sorted(covered - registered)}"
    for case in CASES.values():
        get_method(case.method).make_config(case.settings)  # every tiny setting is one the method has


# ------------------------------------------------------------------------------------- 1. save, load, apply


@pytest.mark.parametrize("case_id, family", _cases())
def test_saved_edit_loads_back_identical(case_id, family, made, request):
    edit, folder = made(case_id, family, request)
    assert edit.kind == get_method(CASES[case_id].method).kind and edit.family == family
    loaded = Edit.load(folder)
    _assert_same_edit(loaded, edit, "loaded from disk")
    assert loaded.created == edit.created


@pytest.mark.parametrize("case_id, family", _cases(kinds=("inference_control", "mask_set")))
def test_apply_then_remove_restores_the_pipeline_bit_for_bit(case_id, family, made, request):
    _, folder = made(case_id, family, request)
    loaded = Edit.load(folder)
    backbone = _backbone(family)
    state, plain = _state(backbone.pipeline), _images(backbone)
    attributes = set(vars(backbone.pipeline))  # after a first generation: diffusers' own call attributes are set

    apply_edit(loaded, backbone.pipeline)
    assert set(vars(backbone.pipeline)) == attributes | {STATE_ATTR}, "an edit's state is not in its one attribute"
    edited = _images(backbone)
    assert not torch.equal(edited, plain), "the applied edit changes no image"
    remove_edit(loaded, backbone.pipeline)

    assert set(vars(backbone.pipeline)) == attributes, "the pipeline's attributes after remove differ from before"
    assert torch.equal(_images(backbone), plain), "images after remove differ from those before apply"
    _assert_same_state(_state(backbone.pipeline), state, "after remove")


@pytest.mark.parametrize("case_id, family", _cases(kinds=("weight_delta",)))
def test_loaded_weight_delta_applies_exactly_like_the_in_memory_one(case_id, family, made, request):
    edit, folder = made(case_id, family, request)
    loaded = Edit.load(folder)
    _assert_same_tensors(loaded, edit, "loaded from disk")

    fresh = _state(_backbone(family).pipeline)
    in_memory, from_disk = _backbone(family), _backbone(family)
    apply_edit(edit, in_memory.pipeline)
    apply_edit(loaded, from_disk.pipeline)
    _assert_same_state(_state(from_disk.pipeline), _state(in_memory.pipeline), "loaded edit against in-memory edit")
    changed = [k for k, v in _state(in_memory.pipeline).items() if not torch.equal(v, fresh[k])]
    assert changed, "the weight delta changes no parameter"


# -------------------------------------------------------------------------------------- 2. wrong family


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_erase_on_an_unsupported_family_is_refused(case_id, request, tmp_path):
    case = CASES[case_id]
    unsupported = [f for f in FAMILIES if f not in get_method(case.method).families]
    if not unsupported:
        pytest.skip(f"{case.method} supports every family ({', '.join(FAMILIES)})")
    for family in unsupported:
        with pytest.raises(UnsupportedModelError, match=family):
            _erase(case, family, request, out=tmp_path / family)
    assert not any(tmp_path.iterdir()), "a refused erase wrote to --out"


@pytest.mark.parametrize("case_id, family", _cases())
def test_edit_is_refused_by_a_pipeline_of_the_other_family(case_id, family, made, request):
    _, folder = made(case_id, family, request)
    loaded = Edit.load(folder)
    other = _backbone("flux" if family == "sd" else "sd")
    state = _state(other.pipeline)
    with pytest.raises(InvalidEditError, match=f"made for a {family} model"):
        apply_edit(loaded, other.pipeline)
    _assert_same_state(_state(other.pipeline), state, "after a refused apply")


# ---------------------------------------------------------------------------------------- 3. unknown setting


@pytest.mark.parametrize("case_id, family", _cases())
def test_unknown_setting_is_refused_by_name_and_nothing_is_written(case_id, family, request, tmp_path):
    case = CASES[case_id]
    settings = _settings(case, request) | {"no_such_setting": "1"}
    with pytest.raises(InvalidSettingError, match="no_such_setting"):
        _erase(case, family, request, out=tmp_path / "edit", settings=settings)
    assert not any(tmp_path.iterdir()), f"a refused erase wrote {sorted(p.name for p in tmp_path.iterdir())}"


# ---------------------------------------------------------------------------------------------------- 4. seeds


@pytest.mark.parametrize("case_id, family", _cases())
def test_the_same_seed_gives_the_same_edit(case_id, family, made, request):
    first, _ = made(case_id, family, request, seed=0, run=0)
    second, _ = made(case_id, family, request, seed=0, run=1)
    _assert_same_edit(second, first, "two runs with seed 0")


@pytest.mark.parametrize("case_id, family", _other_seed_cases())
def test_another_seed_changes_the_edit(case_id, family, made, request):
    zero, _ = made(case_id, family, request, seed=0)
    one, _ = made(case_id, family, request, seed=1)
    assert zero.tensors, "a seeded method's edit holds tensors; compare something else for this one"
    assert sorted(one.tensors) == sorted(zero.tensors)
    differing = [k for k in zero.tensors if not torch.equal(one.tensors[k], zero.tensors[k])]
    assert differing, "seed 0 and seed 1 give bit-identical tensors"


@pytest.mark.parametrize("case_id, family", _unseeded_cases())
def test_an_unseeded_method_gives_the_same_edit_for_every_seed(case_id, family, made, request):
    zero, _ = made(case_id, family, request, seed=0)
    one, _ = made(case_id, family, request, seed=1)
    _assert_same_edit(one, zero, "seed 0 against seed 1")
