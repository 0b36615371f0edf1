"""`erasekit attack`: attack an erased model and report the attack success rate."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import app, finite, guard, out


@app.command()
@guard
def attack(
    concept: str = typer.Option(..., "--concept", "-c", help="The erased concept the attack tries to bring back."),
    prompts: Path = typer.Option(
        ...,
        "--prompts",
        help="Prompts to attack (CSV with a 'prompt' column, or .txt); replay generates them as they are.",
    ),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Folder for results.json, prompts.csv, images.png."),
    kind: str = typer.Option(
        "unlearndiffatk",
        "--attack",
        help="replay, unlearndiffatk, ring-a-bell, mma, p4d-n, p4d-k or textual-inversion.",
    ),
    model: str = typer.Option("toy-sd", help="Toy model name, local diffusers folder or hub id."),
    edit: Optional[list[Path]] = typer.Option(None, "--edit", help="Edit folder(s) of the erased model."),
    judge: str = typer.Option("auto", help="auto, toy, nudenet or clip."),
    threshold: str = typer.Option("standard", help="NudeNet threshold: a number or standard/sensitive/strict."),
    clip: Optional[Path] = typer.Option(None, help="A local CLIP folder (the CLIP judge)."),
    limit: Optional[int] = typer.Option(None, min=1, help="Only the first N prompts."),
    attack_steps: int = typer.Option(40, min=1, help="UnlearnDiffAtk, P4D, MMA: optimisation steps per prompt."),
    generations: int = typer.Option(150, min=1, help="Ring-A-Bell: generations of the genetic search."),
    eta: float = typer.Option(3.0, min=0, callback=finite, help="Ring-A-Bell: strength of the concept vector."),
    seed: int = typer.Option(0, min=0, help="Seed of prompt i when the file has none: seed + i."),
    ti_steps: int = typer.Option(200, min=1, help="Textual inversion: optimisation steps of the embedding."),
    embedding: Optional[Path] = typer.Option(
        None, help="A textual-inversion embedding (an earlier attack's embedding.safetensors) to generate with."
    ),
    overwrite: bool = typer.Option(False, help="Replace an earlier attack's --out folder (only one erasekit wrote)."),
):
    """Attack an erased model and report the attack success rate (see README: Attacks)."""
    from ..eval.attacks import MMAConfig, P4DConfig, RingABellConfig, TextualInversionConfig, UnlearnDiffAtkConfig
    from ..judges import make_judge
    from ..models import toy_world_version
    from ..outputs import check_output_dir
    from ..prompt_sets import load_prompt_file
    from ..workflows.attack import run_attack

    check_output_dir(out_dir, overwrite)
    prompt_set = load_prompt_file(prompts)
    if limit is not None:
        prompt_set = prompt_set.head(limit)
    texts = prompt_set.prompts
    toy = toy_world_version(model) or False
    the_judge = make_judge(judge, [concept], toy=toy, path=str(clip) if clip else None, threshold=threshold)
    result = run_attack(
        model,
        edit or [],
        kind,
        concept,
        texts,
        prompt_set.seeds_or(seed),
        the_judge,
        out_dir,
        configs={
            "unlearndiffatk": UnlearnDiffAtkConfig(steps=attack_steps, seed=seed),
            "ring_a_bell": RingABellConfig(generations=generations, eta=eta, seed=seed),
            "mma": MMAConfig(steps=attack_steps, seed=seed),
            "p4d": P4DConfig(steps=attack_steps, seed=seed),
            "textual_inversion": TextualInversionConfig(steps=ti_steps, seed=seed),
        },
        embedding=embedding,
        overwrite=overwrite,
    )
    m = result.metrics()
    out.print(
        f"{kind}: attack success rate {m['attack_success_rate']:.3f} over {len(texts)} prompts "
        f"(unattacked: {m['pre_attack_rate']:.3f}); wrote {out_dir}"
    )
