"""`erasekit bench`: every method on every concept, evaluated and attacked, with a report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from ..errors import InvalidArgumentError
from .app import app, fail, guard, out, parse_settings


def _split(values: list[str]) -> list[str]:
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


@app.command()
@guard
def bench(
    methods: list[str] = typer.Option(
        ...,
        "--methods",
        "-m",
        help="Methods, comma-separated or repeated; 'all' = every method that supports the model.",
    ),
    concepts: list[str] = typer.Option(..., "--concepts", "-c", help="Concepts, comma-separated or repeated."),
    model: str = typer.Option("toy-sd", help="A toy model (the suites judge with the toy classifier)."),
    suites: str = typer.Option("toy,attack", help="Suites: toy (erasure, preservation), attack (attack success)."),
    attacks: str = typer.Option(
        "unlearndiffatk,ring-a-bell",
        help="Attacks the attack suite runs (replay, unlearndiffatk, ring-a-bell, mma, p4d-n, p4d-k).",
    ),
    out_dir: Path = typer.Option(Path("bench"), "--out", "-o", help="Folder for results.json, report.html, edits."),
    n: int = typer.Option(40, min=2, help="Prompts per group of the toy suite (neighbour: n/2)."),
    n_attack: int = typer.Option(12, min=1, help="Prompts attacked per cell and attack."),
    setting: Optional[list[str]] = typer.Option(None, "--set", help="Per-method setting method.key=value; repeat."),
    seed: int = typer.Option(0, min=0),
):
    """Erase each concept with each method, evaluate and attack; writes results.json and report.html.

    Rerun the same command to resume: finished stages are skipped, failed ones retried.
    """
    from ..methods import available_methods
    from ..models import load
    from ..outputs import check_writable
    from ..workflows.bench import BenchConfig, run_bench

    if out_dir.exists() and not out_dir.is_dir():
        raise InvalidArgumentError(f"--out {out_dir} is a file; give a folder")
    check_writable(out_dir / "results.json", "--out")
    methods = _split(methods)
    if methods == ["all"]:
        family = load(model).family
        methods = [name for name, m in available_methods().items() if family in m.families and not m.alias_of]
    per_method: dict[str, dict] = {}
    for key, value in parse_settings(setting).items():
        if "." not in key:
            raise InvalidArgumentError(f"--set for bench takes method.key=value, got '{key}'")
        name, field_name = key.split(".", 1)
        per_method.setdefault(name, {})[field_name] = value
    config = BenchConfig(
        model=model,
        methods=methods,
        concepts=_split(concepts),
        out=str(out_dir),
        suites=_split([suites]),
        attacks=_split([attacks]),
        n=n,
        n_attack=n_attack,
        settings=per_method,
        seed=seed,
    )
    start = time.time()
    results = run_bench(config, log=out.print)
    failed = [k for k, c in results["cells"].items() if any(v.get("status") == "failed" for v in c["stages"].values())]
    out.print(f"wrote {out_dir / 'results.json'} and {out_dir / 'report.html'} ({time.time() - start:.0f}s)")
    if failed:
        fail(f"{len(failed)} cell(s) had a failing stage: {', '.join(failed)}; rerun to retry them", code=1)
