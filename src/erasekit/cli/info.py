"""`erasekit models` and `erasekit methods`: what this installation offers."""

from __future__ import annotations

import json

from rich.table import Table

from .app import app, guard, out


@app.command()
@guard
def models():
    """List the toy models and the model families erasekit supports."""
    from ..models import TOY_MODELS, toy_weights_dir

    table = Table(title="toy models (shipped in the package)")
    table.add_column("name")
    table.add_column("pipeline")
    table.add_column("status")
    for name in TOY_MODELS:
        folder = toy_weights_dir() / name
        index = folder / "model_index.json"
        kind = json.loads(index.read_text())["_class_name"] if index.exists() else "-"
        table.add_row(name, kind, "ready" if index.exists() else "missing: run `erasekit toy train`")
    out.print(table)
    out.print(
        "Also accepted: a local diffusers folder or a hub id (StableDiffusionPipeline, FluxPipeline), "
        "e.g. CompVis/stable-diffusion-v1-4 or black-forest-labs/FLUX.1-schnell where a hub is reachable."
    )


@app.command()
@guard
def methods():
    """List the erasure methods."""
    from ..methods import available_methods

    table = Table(title="erasure methods")
    for col in ("name", "edit kind", "families", "what it does"):
        table.add_column(col)
    for name, m in available_methods().items():
        table.add_row(name, m.kind, ", ".join(m.families), m.summary + (f" [{m.notes}]" if m.notes else ""))
    out.print(table)
