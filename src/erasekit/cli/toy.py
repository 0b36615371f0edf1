"""`erasekit toy train` and `erasekit toy eval`: the toy world's models and how good they are."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..errors import InvalidArgumentError
from .app import finite, guard, out, toy_app


@toy_app.command("train")
@guard
def toy_train(
    what: str = typer.Argument(..., help="classifier | vae | sd | flux"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Weights folder (default: the package's)."),
    steps: Optional[int] = typer.Option(None, min=1, help="Optimisation steps (default: the trainer's)."),
    batch_size: Optional[int] = typer.Option(None, min=1),
    minutes: Optional[float] = typer.Option(
        None, min=0.01, callback=finite, help="Fit the step count to this wall-clock budget."
    ),
    device: Optional[str] = typer.Option(None, help="cpu or cuda (default: cuda when available)."),
    seed: int = typer.Option(0, min=0),
):
    """Train a toy model from scratch on the toy world (seeded)."""
    from diffusers import AutoencoderKL

    from ..models import toy_weights_dir
    from ..outputs import check_writable
    from ..toy import train as T

    root = out_dir or toy_weights_dir()
    if what not in T.DEFAULT_CONFIGS:
        raise InvalidArgumentError(f"unknown toy model '{what}'; choose classifier, vae, sd or flux")
    check_writable(root / what, "--out")
    cfg = T.default_config(what, seed=seed, device=device, time_budget_s=None if minutes is None else minutes * 60)
    if steps:
        cfg.steps = steps
    if batch_size:
        cfg.batch_size = batch_size
    if what == "classifier":
        T.train_classifier(root / "classifier", cfg)
    elif what == "vae":
        T.train_vae(root / "vae", cfg)
    else:
        vae_dir = next((p for p in (root / "vae", root / "toy-sd" / "vae") if (p / "config.json").exists()), None)
        if vae_dir is None:
            raise InvalidArgumentError(f"no trained autoencoder under {root}; run `erasekit toy train vae` first")
        vae = AutoencoderKL.from_pretrained(vae_dir)
        (T.train_sd if what == "sd" else T.train_flux)(vae, root / f"toy-{what}", cfg)
    out.print(f"trained {what} -> {root}")


@toy_app.command("eval")
@guard
def toy_eval(
    n: int = typer.Option(300, min=1, help="Images per measurement (held-out templates)."),
    steps: int = typer.Option(25, min=1, help="Sampler steps."),
    model: Optional[list[str]] = typer.Option(None, help="Toy model(s) to measure (default: all)."),
    json_path: Optional[Path] = typer.Option(None, "--json"),
):
    """Measure the judge on real images and each toy model's samples, per head."""
    from ..atomic import write_json
    from ..models import TOY_MODELS
    from ..outputs import check_output_file
    from ..workflows.toy_quality import toy_quality

    check_output_file(json_path)
    report = toy_quality(model or TOY_MODELS, n=n, steps=steps)
    table = Table(title=f"toy world quality ({n} held-out prompts, {steps} steps)")
    for col in ("what", "shape", "colour", "pattern", "all heads"):
        table.add_column(col)
    for key, value in report.items():
        if isinstance(value, dict):
            label = key + (f" (guidance {value['guidance_scale']})" if "guidance_scale" in value else "")
            table.add_row(label, *(f"{value[h]:.1%}" for h in ("shape", "colour", "pattern", "all_heads")))
    out.print(table)
    if json_path:
        write_json(json_path, report)
