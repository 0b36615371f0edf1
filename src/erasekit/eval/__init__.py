"""Evaluation: the toy suite (exact erasure metrics on the toy world), Fréchet distance and HTML reports."""

from .fid import frechet_distance
from .report import image_grid, write_html_report
from .toy_suite import (
    GenerateFn,
    PromptItem,
    ToySuiteConfig,
    ToySuiteResult,
    build_prompt_set,
    run_toy_suite,
)

__all__ = [
    "GenerateFn",
    "PromptItem",
    "ToySuiteConfig",
    "ToySuiteResult",
    "build_prompt_set",
    "frechet_distance",
    "image_grid",
    "run_toy_suite",
    "write_html_report",
]
