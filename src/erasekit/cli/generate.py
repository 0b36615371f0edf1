"""`erasekit generate`: images, optionally with edits applied."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import InvalidArgumentError
from .app import app, finite, guard, out


@app.command()
@guard
def generate(
    prompt: list[str] = typer.Option(..., "--prompt", "-p", help="Prompt(s); repeat for several."),
    model: str = typer.Option("toy-sd", help="Toy model name, local diffusers folder or hub id."),
    edit: Optional[list[Path]] = typer.Option(None, "--edit", help="Edit folder(s) to apply, in order."),
    seed: int = typer.Option(0, min=0, help="Seed of the first image; image i uses seed + i."),
    num: int = typer.Option(1, "--num", "-n", min=1, help="Images per prompt."),
    steps: Optional[int] = typer.Option(None, min=1, help="Sampler steps (default: the model's)."),
    guidance: Optional[float] = typer.Option(
        None, min=0, callback=finite, help="Guidance scale (default: the model's)."
    ),
    out_path: Path = typer.Option(Path("image.png"), "--out", "-o", help="PNG file (a grid when several images)."),
):
    """Generate images, optionally with edits applied."""
    from ..atomic import atomic_path
    from ..eval import image_grid
    from ..generate import generate as run
    from ..methods import load_model
    from ..outputs import check_output_file

    if out_path.suffix.lower() != ".png":
        raise InvalidArgumentError(f"--out must be a .png file, got {out_path}")
    check_output_file(out_path, "--out")
    backbone = load_model(model, edit or [])
    prompts = [p for p in prompt for _ in range(num)]
    images = run(
        backbone,
        prompts,
        [seed + i for i in range(len(prompts))],
        num_inference_steps=steps,
        guidance_scale=guidance,
        progress=len(prompts) > 1,
    )
    grid = image_grid(images, nrow=min(8, len(prompts))) if len(prompts) > 1 else image_grid(images, nrow=1, padding=0)
    with atomic_path(out_path) as tmp:
        grid.save(tmp)
    out.print(f"wrote {out_path} ({len(prompts)} image{'s' if len(prompts) > 1 else ''})")
