"""The demo: erase a concept from toy-sd with the best available method, evaluate it, write an HTML report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..atomic import write_json
from ..eval import ToySuiteConfig, provenance, write_html_report
from ..eval.toy_suite import ToySuiteResult
from ..methods import available_methods
from ..models import load, toy_world_version
from ..outputs import open_run_folder
from .erase import erase
from .evaluate import evaluate_toy

# Methods the demo prefers, best first by their toy-world results (README); the first one that is registered
# and supports the model is used.
DEMO_PREFERENCE = ("abo", "erasediff", "esd-x", "negprompt")


def demo(
    out: str | Path = "demo-report",
    concept: str = "star",
    n: int = 24,
    method: str | None = None,
    log: Callable[[str], None] = print,
    on_edit: Callable | None = None,
) -> tuple[Path, ToySuiteResult]:
    """Erase ``concept`` from toy-sd, run the toy suite with ``n`` prompts per group, write ``<out>/report.html``.

    ``out`` is new or an earlier demo's folder (everything in it is made again), never a folder of the user's.
    Returns the report's path and the suite's result.
    """
    out = open_run_folder(out, "demo", {})
    backbone = load("toy-sd")
    registered = available_methods()
    method = method or next(m for m in DEMO_PREFERENCE if m in registered and "sd" in registered[m].families)
    log(f"[bold]erasekit demo[/]: erasing '{concept}' from toy-sd with {method}")
    edit = erase(backbone, method, [concept], out / f"edit-{method}-{concept}", overwrite=True)
    if on_edit is not None:
        on_edit(edit)
    config = ToySuiteConfig(concept=concept, n_target=n, n_synonym=n, n_preserve=n, n_neighbour=n // 2)
    result = evaluate_toy("toy-sd", concept, [edit], config)
    payload = result.to_json() | {"model": "toy-sd", "method": method}
    write_json(out / "results.json", payload)
    grids = []
    if result.images:
        k = min(8, result.n_images["target"])
        base_images, edited_images, captions = result.images["base"], result.images["edited"], result.image_prompts
        grids = [
            (f"prompts naming '{concept}'", base_images[:k], edited_images[:k], captions[:k]),
            ("prompts without it", base_images[k:], edited_images[k:], captions[k:]),
        ]
    info = (
        provenance.environment()
        | {
            "model": "toy-sd",
            "method": method,
            "suite": "toy",
            "seed": config.seed,
            "judge": provenance.toy_judge(toy_world_version("toy-sd")),
        }
        | ({"note": edit.notes} if edit.notes else {})
    )
    report = write_html_report(
        out / "report.html",
        f"erasekit demo: '{concept}' erased from toy-sd with {method}",
        [payload],
        grids,
        provenance=info,
    )
    return report, result
