"""`erasekit erase`, `export` and `import-masks`: make edits and bake them in."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from .app import app, err, finite, guard, out, parse_settings, print_edit_notes


@app.command()
@guard
def erase(
    concept: list[str] = typer.Option(..., "--concept", "-c", help="Concept(s) to erase; repeat for several."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Folder for the Edit (must not exist)."),
    model: str = typer.Option("toy-sd", help="Toy model name, local diffusers folder or hub id."),
    method: str = typer.Option(
        "negprompt",
        help="Erasure method (see `erasekit methods`): negprompt, sld, esd-x, "
        "esd-u, uce, erasediff, abo, gie, mce. abo (All-but-One) is reconstructed from the paper's "
        "abstract: not the authors' algorithm.",
    ),
    anchor: Optional[str] = typer.Option(None, help="Concept the target should become (methods that use one)."),
    preserve: Optional[list[str]] = typer.Option(None, help="Concepts to keep intact (methods that use them)."),
    setting: Optional[list[str]] = typer.Option(None, "--set", help="Method setting key=value; repeat."),
    lora_rank: Optional[int] = typer.Option(None, help="Train a PEFT LoRA of this rank (fine-tuning methods)."),
    scale: Optional[float] = typer.Option(
        None, callback=finite, help="GIE: a fixed suppression scale w < 0 instead of training its adapter."
    ),
    seed: int = typer.Option(0, min=0),
    overwrite: bool = typer.Option(
        False,
        help="Replace an existing --out edit folder (only an edit folder) and "
        "discard an interrupted run's <out>.work/.",
    ),
    resume: bool = typer.Option(
        False,
        help="Continue an interrupted training run from <out>.work/; the edit is the one an uninterrupted run makes.",
    ),
):
    """Erase concept(s) from a model; writes an Edit folder."""
    from ..workflows.erase import erase as run

    start = time.time()
    settings = parse_settings(setting)
    if lora_rank is not None:
        settings["lora_rank"] = lora_rank
    if scale is not None:
        settings["scale"] = scale
    try:
        edit = run(
            model,
            method,
            concept,
            out_dir,
            anchor=anchor,
            preserve=preserve or [],
            settings=settings,
            seed=seed,
            overwrite=overwrite,
            resume=resume,
        )
    except KeyboardInterrupt:
        options = [
            ("--model", model),
            ("--method", method),
            *(("--concept", c) for c in concept),
            ("--out", str(out_dir)),
            ("--anchor", anchor),
            *(("--preserve", p) for p in preserve or []),
            *(("--set", s) for s in setting or []),
            ("--lora-rank", lora_rank),
            ("--scale", scale),
            ("--seed", seed),
        ]
        _interrupted(
            Path(f"{out_dir}.work"),
            ["erasekit", "erase", *(str(x) for o in options if o[1] is not None for x in o), "--resume"],
        )
    out.print(
        f"erased {', '.join(edit.concepts)} from {model} with {method} ({edit.kind}) in "
        f"{time.time() - start:.1f}s -> {out_dir}"
    )
    print_edit_notes(edit)


def _interrupted(workdir: Path, resume_command: list[str]):
    """After Ctrl-C: the command that continues the run, when it left a checkpoint to continue from."""
    import shlex

    from ..methods.training.engine import CHECKPOINT_DIR

    if (workdir / CHECKPOINT_DIR).is_dir():
        err.print(
            f"interrupted; the last checkpoint is in {workdir}. Continue with:\n  {shlex.join(resume_command)}",
            highlight=False,
            soft_wrap=True,
        )
    else:
        err.print("interrupted before the first checkpoint; nothing to continue from", highlight=False)
    raise typer.Exit(130)


@app.command()
@guard
def export(
    edit: list[Path] = typer.Option(..., "--edit", help="Weight-delta or mask edit folder(s) to bake in, in order."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Folder for the plain diffusers pipeline."),
    model: str = typer.Option("toy-sd", help="The base model the edits were made on."),
):
    """Bake weight edits into a plain diffusers folder (LoRA adapters merged) that needs no erasekit."""
    from ..workflows.export import export as run

    run(model, edit, out_dir)
    out.print(f"wrote {out_dir}: a plain diffusers pipeline with {len(edit)} edit(s) baked in")


@app.command("import-masks")
@guard
def import_masks(
    ff: Path = typer.Option(..., help="The MCE authors' ff.pt (FFN logits, ff / ff_context per double block)."),
    norm: Path = typer.Option(..., help="Their norm.pt (norm1_context.linear logits per double block)."),
    attn: Optional[Path] = typer.Option(None, help="Their attn.pt (per-head logits), optional."),
    concept: list[str] = typer.Option(..., "--concept", "-c", help="The concept(s) the masks erase."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Folder for the mask Edit (must not exist)."),
    model: str = typer.Option("black-forest-labs/FLUX.1-schnell", help="The FLUX model the masks were made for."),
):
    """Turn MCE's released FLUX mask files into an erasekit mask Edit (read with weights_only=True)."""
    from ..workflows.masks import import_mce_masks

    edit = import_mce_masks(model, ff, norm, attn, concept, out_dir)
    share = edit.data["pruned_share"]
    out.print(
        f"wrote {out_dir}: {share.get('all ffn', 0):.1%} of FFN units and {share.get('all norm', 0):.1%} of "
        "modulation channels switched off"
    )
