"""`erasekit toy train` and `erasekit toy eval`: the toy world's models and how good they are."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..errors import InvalidArgumentError
from .app import finite, guard, out, toy_app


def _loss_weight(help: str):
    """A loss term's weight: unset by default, at least 0, finite."""
    return typer.Option(None, min=0.0, callback=finite, help=help)


@toy_app.command("train")
@guard
def toy_train(
    what: str = typer.Argument(
        ..., help="World 2: judge | vae | clip | t5 | sd | flux. World 1: classifier | vae | sd | flux."
    ),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Weights folder (default: the package's)."),
    steps: Optional[int] = typer.Option(None, min=1, help="Optimisation steps (default: the trainer's)."),
    batch_size: Optional[int] = typer.Option(None, min=1),
    minutes: Optional[float] = typer.Option(
        None, min=0.01, callback=finite, help="Fit the step count to this wall-clock budget."
    ),
    device: Optional[str] = typer.Option(None, help="cpu or cuda (default: cuda when available)."),
    seed: int = typer.Option(0, min=0),
    summary_dropout: Optional[float] = typer.Option(
        None, min=0.0, max=1.0, help="sd, flux: share of samples whose EOT and padding slots are the empty caption's."
    ),
    summary_swap: Optional[float] = typer.Option(
        None, min=0.0, max=1.0, help="sd, flux: share of samples whose EOT and padding slots are another caption's."
    ),
    summary_swap_same_count: Optional[bool] = typer.Option(
        None,
        "--summary-swap-same-count",
        help="sd, flux: a swapped summary comes from a caption of a scene with as many objects.",
    ),
    x0_weight_floor: Optional[float] = typer.Option(
        None, min=0.0, max=5.0, help="sd: least loss weight of a step, in clean-latent terms (min-SNR: 0)."
    ),
    attention_heads: Optional[int] = typer.Option(
        None, min=1, help="sd: attention heads per UNet layer (default 8; a continued UNet's heads are regrouped)."
    ),
    attention_grounding: Optional[float] = _loss_weight(
        "sd: weight of the loss pulling each object word's cross-attention into its object's cell (default 0)."
    ),
    attention_grounding_power: Optional[float] = typer.Option(
        None,
        min=0.0,
        max=4.0,
        help="sd: the grounding loss of step t weighs ᾱ_t to this power (default 0.5; 0: every step alike).",
    ),
    attention_binding: Optional[float] = _loss_weight(
        "sd: weight of the loss making one object's words look at one cell and two objects' at two (default 0)."
    ),
    phrase_locality: Optional[float] = _loss_weight(
        "clip, t5: weight of the token-level terms keeping each object phrase's word slots as when it is alone."
    ),
    word_locality: Optional[float] = _loss_weight(
        "clip, t5: weight of the token-level term keeping each attribute word's slot as when it is encoded alone."
    ),
    word_margin: Optional[float] = typer.Option(
        None, min=0.0, max=1.0, help="clip, t5: the word-locality term leaves word slots this close (cosine) alone."
    ),
    phrase_readout: Optional[float] = _loss_weight(
        "clip, t5: weight of the term making each attribute word's slot name its phrase (a noun its colour)."
    ),
    name: Optional[str] = typer.Option(None, help="Folder name instead of the stage's (a variant, e.g. sd-p0.5)."),
    init_from: Optional[Path] = typer.Option(
        None,
        help="sd, flux: continue from this trained v2 pipeline's denoiser; clip, t5: from this toy CLIP / T5 folder.",
    ),
    lr: Optional[float] = typer.Option(
        None, min=1e-8, callback=finite, help="Peak learning rate (default: the trainer's)."
    ),
    world: int = typer.Option(2, min=1, max=2, help="The toy world to train for (1: the models before v2)."),
    overwrite: bool = typer.Option(False, help="Train a stage again whose folder exists."),
):
    """Train one stage of the toy world from scratch (seeded); a killed stage resumes when run again.

    World 2 stages, in order: judge, vae, clip, t5 (after clip), sd (after vae and clip), flux (after vae, clip
    and t5); checkpoints and the latent cache are kept in <out>/.work."""
    from ..models import toy_weights_dir

    root = out_dir or toy_weights_dir()
    chosen = (
        ("summary_dropout", summary_dropout),
        ("summary_swap", summary_swap),
        ("summary_swap_same_count", summary_swap_same_count),
        ("x0_weight_floor", x0_weight_floor),
        ("attention_heads", attention_heads),
        ("attention_grounding", attention_grounding),
        ("attention_grounding_power", attention_grounding_power),
        ("attention_binding", attention_binding),
        ("phrase_locality", phrase_locality),
        ("word_locality", word_locality),
        ("word_margin", word_margin),
        ("phrase_readout", phrase_readout),
    )
    if world == 1:
        if any(v is not None for _, v in chosen) or init_from is not None or lr is not None:
            raise InvalidArgumentError(
                "--summary-dropout/-swap(-same-count), --x0-weight-floor, "
                "--attention-heads/-grounding(-power)/-binding, --phrase-/--word-locality/-margin, --phrase-readout, "
                "--init-from and --lr are world-2 settings"
            )
        _train_v1(what, root, steps, batch_size, minutes, device, seed)
        return
    from ..toy.stages import train_stage

    settings = {k: v for k, v in chosen if v is not None} or None
    folder = train_stage(
        what,
        root,
        steps=steps,
        minutes=minutes,
        batch_size=batch_size,
        seed=seed,
        device=device,
        settings=settings,
        name=name,
        overwrite=overwrite,
        init_from=init_from,
        lr=lr,
    )
    out.print(f"trained {what} -> {folder}")


@toy_app.command("status")
@guard
def toy_status(out_dir: Path = typer.Option(..., "--out", help="The folder the stages train into.")):
    """Which toy-world stages of a training folder are done, in progress (their step) or not started."""
    from ..toy.stages import stage_status

    table = Table(title=f"toy world stages in {out_dir}")
    table.add_column("stage")
    table.add_column("status")
    for stage, status in stage_status(out_dir).items():
        table.add_row(stage, status)
    out.print(table)


def _train_v1(what, root, steps, batch_size, minutes, device, seed) -> None:
    from diffusers import AutoencoderKL

    from ..outputs import check_writable
    from ..toy import train as T

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
    columns = {
        "shape": ("shape", "shape_acc"),
        "colour": ("colour", "colour_acc"),
        "pattern": ("pattern", "pattern_acc"),
        "all heads / object": ("all_heads", "object_acc"),
        "scene": (None, "scene_acc"),
        "style": ("style", "style_acc"),
        "bare concept": (None, "bare_acc"),
    }
    table.add_column("what")
    for col in columns:
        table.add_column(col)
    for key, value in report.items():
        if isinstance(value, dict):
            label = key + (f" (guidance {value['guidance_scale']})" if "guidance_scale" in value else "")
            cells = []
            for v1_key, v2_key in columns.values():
                found = next((value[k] for k in (v1_key, v2_key) if k is not None and k in value), None)
                cells.append("" if found is None else f"{found:.1%}")
            table.add_row(label, *cells)
    out.print(table)
    if json_path:
        write_json(json_path, report)
