"""The public face of erasekit for Python users: the workflows behind the CLI, and the pieces they are made of.

    import erasekit.api as ek
    edit = ek.erase("toy-sd", "negprompt", ["star"], out="runs/star")
    result = ek.evaluate_toy("toy-sd", "star", edits=["runs/star"])

Everything here is defined in the layer it belongs to (``workflows``, ``methods``, ``models``, ``toy``, ...); this
module only gathers the names.
"""

from __future__ import annotations

from .atomic import write_json
from .methods import apply_edit, load_edits, load_model, remove_edit
from .methods.mce import bake_mask_edit
from .models import is_toy
from .toy.classifier import load_classifier
from .toy.prompts import check_concepts_toy, toy_anchor_prompts, toy_preserve_prompts, toy_prompts
from .workflows.attack import run_attack
from .workflows.bench import BenchConfig, run_bench
from .workflows.demo import demo
from .workflows.erase import check_concepts, erase
from .workflows.evaluate import PROMPT_SUITES, evaluate_prompt_set, evaluate_toy, generator_fn, run_world_suite
from .workflows.export import export
from .workflows.masks import import_mce_masks
from .workflows.toy_quality import toy_quality

__all__ = [
    "BenchConfig",
    "PROMPT_SUITES",
    "apply_edit",
    "bake_mask_edit",
    "check_concepts",
    "check_concepts_toy",
    "demo",
    "erase",
    "evaluate_prompt_set",
    "evaluate_toy",
    "run_world_suite",
    "export",
    "generator_fn",
    "import_mce_masks",
    "is_toy",
    "load_classifier",
    "load_edits",
    "load_model",
    "remove_edit",
    "run_attack",
    "run_bench",
    "toy_anchor_prompts",
    "toy_preserve_prompts",
    "toy_prompts",
    "toy_quality",
    "write_json",
]
