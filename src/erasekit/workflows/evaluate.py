"""The evaluate workflow on the toy world: the toy suite of an edited model against the unedited one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch

from ..edits import Edit
from ..errors import InvalidArgumentError, UnknownConceptError
from ..eval import ToySuiteConfig, ToySuiteResult, run_toy_suite
from ..eval.prompt_suite import PromptSuiteConfig, run_prompt_suite
from ..eval.scene_suite import SceneSuiteConfig, run_scene_suite
from ..generate import generate
from ..methods import load_edits, load_model
from ..models import TOY_MODELS, Backbone, load
from ..prompt_sets import PROMPT_SUITES, load_prompt_file, load_prompt_set
from ..toy import worlds
from .erase import check_concepts


def generator_fn(backbone: Backbone, batch_size: int = 50, **kwargs):
    def fn(prompts: list[str], seeds: list[int]) -> torch.Tensor:
        return generate(backbone, prompts, seeds, batch_size=batch_size, **kwargs)

    return fn


def evaluate_toy(
    model: str | Path,
    concept: str,
    edits: Sequence[str | Path | Edit] = (),
    config: ToySuiteConfig | None = None,
    progress: bool = True,
) -> ToySuiteResult:
    """Run the toy suite for ``concept`` on ``model`` with ``edits`` against the unedited model: the suite of
    the model's toy world (world v2: the scene suite, with ``context_acc`` and the toy CLIP's ``clip_score``)."""
    config = config or ToySuiteConfig(concept=concept)
    edits = load_edits(edits)  # fail on a bad folder before loading
    if str(model) in TOY_MODELS:
        check_concepts(model, [concept])
    base = load(model)
    if not base.is_toy:
        raise UnknownConceptError(f"the toy suite needs a toy model ({', '.join(TOY_MODELS)}), not {model}")
    check_concepts(base, [concept])
    unedited = generator_fn(base, config.batch_size)
    if not edits:
        return run_world_suite(base.toy_world_version, config, unedited, progress=progress)
    edited = generator_fn(load_model(model, edits), config.batch_size)
    return run_world_suite(base.toy_world_version, config, edited, base=unedited, progress=progress)


def run_world_suite(version: int, config: ToySuiteConfig, edited, base=None, progress: bool = True) -> ToySuiteResult:
    """The toy suite of toy world ``version`` with its shipped judge (and, in v2, its CLIP): ``edited`` and
    ``base`` are ``(prompts, seeds) -> images`` generators, as ``run_toy_suite`` takes them."""
    judge = worlds.load_world_judge(version)
    if version == 1:
        return run_toy_suite(config, judge, edited, base=base, progress=progress)
    scene_config = SceneSuiteConfig(**asdict(config))
    return run_scene_suite(
        scene_config, judge, edited, base=base, clip_model=worlds.clip_folder(version), progress=progress
    )


def evaluate_prompt_set(
    model: str | Path,
    edits: Sequence[str | Path | Edit],
    suite: str,
    prompts: str | Path | None,
    out: str | Path | None,
    config: PromptSuiteConfig,
    overwrite: bool = False,
):
    """A prompt-set suite (``PROMPT_SUITES``) on ``model`` with ``edits``; returns ``(prompt set, results)``, the
    results ``None`` on a non-main process of an accelerate launch."""
    if out is None:
        raise InvalidArgumentError(f"the {suite} suite writes images: give --out DIR")
    kind, options = PROMPT_SUITES[suite]
    if kind is None:
        if prompts is None:
            raise InvalidArgumentError("--suite prompts needs --prompts FILE (.csv with a 'prompt' column, or .txt)")
        prompt_set = load_prompt_file(prompts)
    else:
        prompt_set = load_prompt_set(kind, prompts, **options)
    return prompt_set, run_prompt_suite(model, edits, prompt_set, config, out, overwrite=overwrite)
