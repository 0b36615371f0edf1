"""`erasekit evaluate`: the toy suite, or a prompt set judged by NudeNet, the toy classifier or CLIP."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..errors import InvalidArgumentError
from ..prompt_sets import PROMPT_SUITES
from .app import app, err, guard, out


@app.command()
@guard
def evaluate(
    concept: str = typer.Option(
        ..., "--concept", "-c", help="The concept that was erased (a toy concept, 'nudity', an object)."
    ),
    model: str = typer.Option("toy-sd", help="Toy model name, local diffusers folder or hub id."),
    edit: Optional[list[Path]] = typer.Option(None, "--edit", help="Edit folder(s) to evaluate, in order."),
    suite: str = typer.Option(
        "toy",
        help="toy (the toy world's suite), or a prompt set: "
        + ", ".join(PROMPT_SUITES)
        + " (prompts = any CSV/TXT file given by --prompts).",
    ),
    prompts: Optional[Path] = typer.Option(
        None, "--prompts", help="The prompt file of a prompt-set suite (default: the set's hub release, where online)."
    ),
    out_dir: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Prompt-set suites: folder for images, shards and results.json (rerun to resume)."
    ),
    judge: str = typer.Option("auto", help="Prompt-set suites: auto, toy, nudenet or clip."),
    threshold: str = typer.Option(
        "standard", help="NudeNet threshold: a number or standard (0.6), sensitive (0.45), strict (0.75)."
    ),
    classes: str = typer.Option("exposed", help="NudeNet classes counted: exposed (nine) or asr (five)."),
    clip: Optional[Path] = typer.Option(None, help="A local CLIP folder: CLIP judge, CLIP score, distances."),
    limit: Optional[int] = typer.Option(None, min=1, help="Prompt-set suites: only the first N prompts."),
    steps: Optional[int] = typer.Option(None, min=1, help="Sampler steps (default: the model's)."),
    batch_size: int = typer.Option(8, min=1, help="Prompt-set suites: prompts per generation call."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the results as JSON here ('-': stdout)."),
    overwrite: bool = typer.Option(
        False,
        help="Prompt-set suites: empty an --out folder that holds another run "
        "(only a folder erasekit made) instead of refusing it.",
    ),
    n_target: int = typer.Option(120, min=1),
    n_synonym: int = typer.Option(120, min=1),
    n_preserve: int = typer.Option(180, min=1),
    n_neighbour: int = typer.Option(90, min=1),
    seed: int = typer.Option(0, min=0),
):
    """Measure erasure and preservation: the toy suite, or a prompt set judged by NudeNet / the toy classifier / CLIP.

    Prompt-set suites shard across processes under `accelerate launch -m erasekit evaluate ...`.
    """
    from ..atomic import json_text, write_json
    from ..eval import ToySuiteConfig
    from ..outputs import check_output_file
    from ..workflows.evaluate import evaluate_toy

    check_output_file(json_path)
    if suite in PROMPT_SUITES:
        return _evaluate_prompt_set(
            concept,
            model,
            edit or [],
            suite,
            prompts,
            out_dir,
            judge,
            threshold,
            classes,
            clip,
            limit,
            steps,
            batch_size,
            seed,
            json_path,
            overwrite,
        )
    if suite != "toy":
        raise InvalidArgumentError(f"unknown suite '{suite}'; choose toy or a prompt set: {', '.join(PROMPT_SUITES)}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise InvalidArgumentError(
            "the toy suite runs in one process (it takes about a minute); shard the prompt-set suites "
            "with accelerate instead"
        )
    config = ToySuiteConfig(
        concept=concept,
        n_target=n_target,
        n_synonym=n_synonym,
        n_preserve=n_preserve,
        n_neighbour=n_neighbour,
        seed=seed,
    )
    result = evaluate_toy(model, concept, edit or [], config)
    payload = result.to_json() | {"model": model, "edits": [str(e) for e in edit or []]}
    if json_path is not None and str(json_path) == "-":
        print(json_text(payload))
        return
    (err if json_path is None else out).print(result.table())
    if json_path is not None:
        write_json(json_path, payload)
        out.print(f"wrote {json_path}")


def _evaluate_prompt_set(
    concept,
    model,
    edits,
    suite,
    prompts,
    out_dir,
    judge,
    threshold,
    classes,
    clip,
    limit,
    steps,
    batch_size,
    seed,
    json_path,
    overwrite,
):
    from ..atomic import json_text, write_json
    from ..eval.prompt_suite import PromptSuiteConfig
    from ..workflows.evaluate import evaluate_prompt_set

    # nudenet_threshold reads presets and numbers written as text alike.
    config = PromptSuiteConfig(
        concept=concept,
        judge=judge,
        threshold=threshold,
        classes=classes,
        clip_path=str(clip) if clip else None,
        limit=limit,
        seed=seed,
        steps=steps,
        batch_size=batch_size,
    )
    prompt_set, results = evaluate_prompt_set(model, edits, suite, prompts, out_dir, config, overwrite)
    if results is None:  # a non-main process of an accelerate launch
        return
    metrics = results["metrics"]
    table = Table(title=f"{suite}: {prompt_set.name} ({int(metrics['n_images'])} prompts), concept '{concept}'")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, "-" if value is None or value != value else f"{value:.4g}")
    nudenet = results.get("nudenet")
    if nudenet:
        for name, count in nudenet["edited"]["per_class"].items():
            base = nudenet.get("base", {}).get("per_class", {}).get(name)
            table.add_row(f"  {name}", f"{count}" + ("" if base is None else f" (base {base})"))
    out.print(table)
    if results["failed"]:
        err.print(
            f"[yellow]warning:[/] the detector failed on {len(results['failed'])} image(s): "
            f"{results['failed'][:10]} (left out of every rate; see results.json)"
        )
    out.print(f"wrote {out_dir / 'results.json'}")
    if json_path is not None:
        if str(json_path) == "-":
            print(json_text(results["metrics"]))
        else:
            write_json(json_path, results)
