"""The ``erasekit`` command line (typer + rich)."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import ErasekitError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Remove a concept from a text-to-image diffusion model, and prove it did.")
toy_app = typer.Typer(no_args_is_help=True, help="The toy world: train and measure the shipped toy models.")
app.add_typer(toy_app, name="toy")
out = Console()
err = Console(stderr=True, soft_wrap=True)

# Methods the demo prefers, best first by their toy-world results (README); the first one that is registered
# and supports the model is used.
DEMO_PREFERENCE = ("abo", "erasediff", "esd-x", "negprompt")


def _fail(message: str, code: int = 2):
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _guard(fn):
    """Turn the library's own errors into one clear line and a non-zero exit code."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ErasekitError, FileExistsError, ValueError) as e:
            _fail(str(e))
    return wrapper


def _parse_settings(pairs: list[str] | None) -> dict[str, str]:
    """``key=value`` pairs as text: the method's Config parses each value by its field's type."""
    settings = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set takes key=value, got '{pair}'")
        settings[key.strip()] = value
    return settings


def _finite(value: float | None) -> float | None:
    """Callback of float options: NaN and infinities pass typer's range checks, so they are refused here."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


# ----------------------------------------------------------------------------------------------- models

@app.command()
@_guard
def models():
    """List the toy models and the model families erasekit supports."""
    from .models import TOY_MODELS, toy_weights_dir

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
    out.print("Also accepted: a local diffusers folder or a hub id (StableDiffusionPipeline, FluxPipeline), "
              "e.g. CompVis/stable-diffusion-v1-4 or black-forest-labs/FLUX.1-schnell where a hub is reachable.")


@app.command()
@_guard
def methods():
    """List the erasure methods."""
    from .methods import available_methods

    table = Table(title="erasure methods")
    for col in ("name", "edit kind", "families", "what it does"):
        table.add_column(col)
    for name, m in available_methods().items():
        table.add_row(name, m.kind, ", ".join(m.families), m.summary + (f" [{m.notes}]" if m.notes else ""))
    out.print(table)


# --------------------------------------------------------------------------------------------- generate

@app.command()
@_guard
def generate(
    prompt: list[str] = typer.Option(..., "--prompt", "-p", help="Prompt(s); repeat for several."),
    model: str = typer.Option("toy-sd", help="Toy model name, local diffusers folder or hub id."),
    edit: Optional[list[Path]] = typer.Option(None, "--edit", help="Edit folder(s) to apply, in order."),
    seed: int = typer.Option(0, min=0, help="Seed of the first image; image i uses seed + i."),
    num: int = typer.Option(1, "--num", "-n", min=1, help="Images per prompt."),
    steps: Optional[int] = typer.Option(None, min=1, help="Sampler steps (default: the model's)."),
    guidance: Optional[float] = typer.Option(None, min=0, callback=_finite,
                                             help="Guidance scale (default: the model's)."),
    out_path: Path = typer.Option(Path("image.png"), "--out", "-o", help="PNG file (a grid when several images)."),
):
    """Generate images, optionally with edits applied."""
    from .api import load_model
    from .eval import image_grid
    from .generate import generate as run
    from .outputs import check_output_file

    if out_path.suffix.lower() != ".png":
        raise ValueError(f"--out must be a .png file, got {out_path}")
    check_output_file(out_path, "--out")
    backbone = load_model(model, edit or [])
    prompts = [p for p in prompt for _ in range(num)]
    images = run(backbone, prompts, [seed + i for i in range(len(prompts))], num_inference_steps=steps,
                 guidance_scale=guidance, progress=len(prompts) > 1)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    grid = image_grid(images, nrow=min(8, len(prompts))) if len(prompts) > 1 else image_grid(images, nrow=1, padding=0)
    tmp = out_path.with_name(f".{out_path.name}.tmp.png")
    grid.save(tmp)
    os.replace(tmp, out_path)
    out.print(f"wrote {out_path} ({len(prompts)} image{'s' if len(prompts) > 1 else ''})")


# ------------------------------------------------------------------------------------------------ erase

def _print_edit_notes(edit) -> None:
    """What a user should know about a new edit: the units a mask switches off, the method's notes."""
    share = edit.data.get("pruned_share") if edit.kind == "mask_set" else None
    if share:
        groups = ", ".join(f"{k.split()[1]} {v:.1%}" for k, v in share.items() if k.startswith("all "))
        out.print(f"units switched off: {groups}")
    if edit.notes:
        out.print(f"note: {edit.notes}")


@app.command()
@_guard
def erase(
    concept: list[str] = typer.Option(..., "--concept", "-c", help="Concept(s) to erase; repeat for several."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Folder for the Edit (must not exist)."),
    model: str = typer.Option("toy-sd", help="Toy model name, local diffusers folder or hub id."),
    method: str = typer.Option("negprompt", help="Erasure method (see `erasekit methods`): negprompt, esd-x, "
                               "esd-u, erasediff, abo, gie, mce. abo (All-but-One) is reconstructed from the paper's "
                               "abstract: not the authors' algorithm."),
    anchor: Optional[str] = typer.Option(None, help="Concept the target should become (methods that use one)."),
    preserve: Optional[list[str]] = typer.Option(None, help="Concepts to keep intact (methods that use them)."),
    setting: Optional[list[str]] = typer.Option(None, "--set", help="Method setting key=value; repeat."),
    lora_rank: Optional[int] = typer.Option(None, help="Train a PEFT LoRA of this rank (fine-tuning methods)."),
    scale: Optional[float] = typer.Option(None, callback=_finite, help="GIE: a fixed suppression scale w < 0 "
                                          "instead of training its adapter."),
    seed: int = typer.Option(0, min=0),
    overwrite: bool = typer.Option(False, help="Replace an existing --out edit folder (only an edit folder) and "
                                   "discard an interrupted run's <out>.work/."),
    resume: bool = typer.Option(False, help="Continue an interrupted training run from <out>.work/; the edit is "
                                "the one an uninterrupted run makes."),
):
    """Erase concept(s) from a model; writes an Edit folder."""
    from .api import erase as run

    start = time.time()
    settings = _parse_settings(setting)
    if lora_rank is not None:
        settings["lora_rank"] = lora_rank
    if scale is not None:
        settings["scale"] = scale
    try:
        edit = run(model, method, concept, out_dir, anchor=anchor, preserve=preserve or [],
                   settings=settings, seed=seed, overwrite=overwrite, resume=resume)
    except KeyboardInterrupt:
        options = [("--model", model), ("--method", method), *(("--concept", c) for c in concept),
                   ("--out", str(out_dir)), ("--anchor", anchor), *(("--preserve", p) for p in preserve or []),
                   *(("--set", s) for s in setting or []), ("--lora-rank", lora_rank), ("--scale", scale),
                   ("--seed", seed)]
        _interrupted(Path(f"{out_dir}.work"), ["erasekit", "erase", *(str(x) for o in options if o[1] is not None
                                                                      for x in o), "--resume"])
    out.print(f"erased {', '.join(edit.concepts)} from {model} with {method} ({edit.kind}) in "
              f"{time.time() - start:.1f}s -> {out_dir}")
    _print_edit_notes(edit)


def _interrupted(workdir: Path, resume_command: list[str]):
    """After Ctrl-C: the command that continues the run, when it left a checkpoint to continue from."""
    import shlex

    from .methods.training.engine import CHECKPOINT_DIR

    if (workdir / CHECKPOINT_DIR).is_dir():
        err.print(f"interrupted; the last checkpoint is in {workdir}. Continue with:\n  "
                  f"{shlex.join(resume_command)}", highlight=False, soft_wrap=True)
    else:
        err.print("interrupted before the first checkpoint; nothing to continue from", highlight=False)
    raise typer.Exit(130)


@app.command()
@_guard
def export(
    edit: list[Path] = typer.Option(..., "--edit", help="Weight-delta or mask edit folder(s) to bake in, in order."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Folder for the plain diffusers pipeline."),
    model: str = typer.Option("toy-sd", help="The base model the edits were made on."),
):
    """Bake weight edits into a plain diffusers folder (LoRA adapters merged) that needs no erasekit."""
    from .api import load_model
    from .edits import Edit, export_pipeline
    from .errors import InvalidEditError
    from .outputs import check_output_dir

    check_output_dir(out_dir)
    edits = [Edit.load(e) for e in edit]
    controls = [e.method for e in edits if e.kind == "inference_control"]
    if controls:
        raise InvalidEditError(f"{', '.join(controls)} edits act at inference time and cannot be baked into "
                               "weights; apply them with `erasekit generate --edit` instead")
    weights = [e for e in edits if e.kind == "weight_delta"]
    backbone = load_model(model, weights, device="cpu")
    for mask_edit in (e for e in edits if e.kind == "mask_set"):
        from .api import bake_mask_edit

        # Zeroed, not cut out: the folder keeps the model's shapes, so plain `from_pretrained` loads it.
        bake_mask_edit(backbone, mask_edit, prune=False)
    export_pipeline(backbone.pipeline, out_dir)
    out.print(f"wrote {out_dir}: a plain diffusers pipeline with {len(edits)} edit(s) baked in")


@app.command("import-masks")
@_guard
def import_masks(
    ff: Path = typer.Option(..., help="The MCE authors' ff.pt (FFN logits, ff / ff_context per double block)."),
    norm: Path = typer.Option(..., help="Their norm.pt (norm1_context.linear logits per double block)."),
    attn: Optional[Path] = typer.Option(None, help="Their attn.pt (per-head logits), optional."),
    concept: list[str] = typer.Option(..., "--concept", "-c", help="The concept(s) the masks erase."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Folder for the mask Edit (must not exist)."),
    model: str = typer.Option("black-forest-labs/FLUX.1-schnell", help="The FLUX model the masks were made for."),
):
    """Turn MCE's released FLUX mask files into an erasekit mask Edit (read with weights_only=True)."""
    from .api import import_mce_masks

    edit = import_mce_masks(model, ff, norm, attn, concept, out_dir)
    share = edit.data["pruned_share"]
    out.print(f"wrote {out_dir}: {share.get('all ffn', 0):.1%} of FFN units and {share.get('all norm', 0):.1%} of "
              "modulation channels switched off")


# --------------------------------------------------------------------------------------------- evaluate

# Suites that are prompt sets: name -> (loader kind, loader options).
PROMPT_SUITES = {
    "prompts": (None, {}), "i2p": ("i2p", {}), "i2p-nudity": ("i2p", {"subset": "nudity"}),
    "i2p-sexual": ("i2p", {"subset": "sexual"}), "unlearndiffatk": ("unlearndiffatk", {}),
    "ring-a-bell": ("ring-a-bell", {}), "mma": ("mma", {}), "p4d": ("p4d", {}), "coco": ("coco", {}),
}


@app.command()
@_guard
def evaluate(
    concept: str = typer.Option(..., "--concept", "-c", help="The concept that was erased (a toy concept, 'nudity', "
                                "an object)."),
    model: str = typer.Option("toy-sd", help="Toy model name, local diffusers folder or hub id."),
    edit: Optional[list[Path]] = typer.Option(None, "--edit", help="Edit folder(s) to evaluate, in order."),
    suite: str = typer.Option("toy", help="toy (the toy world's suite), or a prompt set: "
                              + ", ".join(PROMPT_SUITES) + " (prompts = any CSV/TXT file given by --prompts)."),
    prompts: Optional[Path] = typer.Option(None, "--prompts", help="The prompt file of a prompt-set suite "
                                           "(default: the set's hub release, where online)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Prompt-set suites: folder for images, shards "
                                           "and results.json (rerun to resume)."),
    judge: str = typer.Option("auto", help="Prompt-set suites: auto, toy, nudenet or clip."),
    threshold: str = typer.Option("standard", help="NudeNet threshold: a number or standard (0.6), sensitive "
                                  "(0.45), strict (0.75)."),
    classes: str = typer.Option("exposed", help="NudeNet classes counted: exposed (nine) or asr (five)."),
    clip: Optional[Path] = typer.Option(None, help="A local CLIP folder: CLIP judge, CLIP score, distances."),
    limit: Optional[int] = typer.Option(None, min=1, help="Prompt-set suites: only the first N prompts."),
    steps: Optional[int] = typer.Option(None, min=1, help="Sampler steps (default: the model's)."),
    batch_size: int = typer.Option(8, min=1, help="Prompt-set suites: prompts per generation call."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the results as JSON here ('-': stdout)."),
    overwrite: bool = typer.Option(False, help="Prompt-set suites: empty an --out folder that holds another run "
                                   "(only a folder erasekit made) instead of refusing it."),
    n_target: int = typer.Option(120, min=1), n_synonym: int = typer.Option(120, min=1),
    n_preserve: int = typer.Option(180, min=1), n_neighbour: int = typer.Option(90, min=1),
    seed: int = typer.Option(0, min=0),
):
    """Measure erasure and preservation: the toy suite, or a prompt set judged by NudeNet / the toy classifier / CLIP.

    Prompt-set suites shard across processes under `accelerate launch -m erasekit evaluate ...`.
    """
    from .api import evaluate_toy, write_json
    from .eval import ToySuiteConfig
    from .outputs import check_output_file

    check_output_file(json_path)
    if suite in PROMPT_SUITES:
        return _evaluate_prompt_set(concept, model, edit or [], suite, prompts, out_dir, judge, threshold, classes,
                                    clip, limit, steps, batch_size, seed, json_path, overwrite)
    if suite != "toy":
        raise ValueError(f"unknown suite '{suite}'; choose toy or a prompt set: {', '.join(PROMPT_SUITES)}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("the toy suite runs in one process (it takes about a minute); shard the prompt-set suites "
                         "with accelerate instead")
    config = ToySuiteConfig(concept=concept, n_target=n_target, n_synonym=n_synonym, n_preserve=n_preserve,
                            n_neighbour=n_neighbour, seed=seed)
    result = evaluate_toy(model, concept, edit or [], config)
    payload = result.to_json() | {"model": model, "edits": [str(e) for e in edit or []]}
    if json_path is not None and str(json_path) == "-":
        print(json.dumps(payload, indent=2))
        return
    (err if json_path is None else out).print(result.table())
    if json_path is not None:
        write_json(json_path, payload)
        out.print(f"wrote {json_path}")


def _evaluate_prompt_set(concept, model, edits, suite, prompts, out_dir, judge, threshold, classes, clip, limit,
                         steps, batch_size, seed, json_path, overwrite):
    from .api import write_json
    from .eval.prompt_suite import PromptSuiteConfig, run_prompt_suite
    from .eval.prompts import load_prompt_file, load_prompt_set

    if out_dir is None:
        raise ValueError(f"the {suite} suite writes images: give --out DIR")
    kind, options = PROMPT_SUITES[suite]
    if kind is None:
        if prompts is None:
            raise ValueError("--suite prompts needs --prompts FILE (.csv with a 'prompt' column, or .txt)")
        prompt_set = load_prompt_file(prompts)
    else:
        prompt_set = load_prompt_set(kind, prompts, **options)
    # nudenet_threshold reads presets and numbers written as text alike.
    config = PromptSuiteConfig(concept=concept, judge=judge, threshold=threshold, classes=classes,
                               clip_path=str(clip) if clip else None, limit=limit, seed=seed, steps=steps,
                               batch_size=batch_size)
    results = run_prompt_suite(model, edits, prompt_set, config, out_dir, overwrite=overwrite)
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
        err.print(f"[yellow]warning:[/] the detector failed on {len(results['failed'])} image(s): "
                  f"{results['failed'][:10]} (left out of every rate; see results.json)")
    out.print(f"wrote {out_dir / 'results.json'}")
    if json_path is not None:
        if str(json_path) == "-":
            print(json.dumps(results["metrics"], indent=2, default=str))
        else:
            write_json(json_path, results)


# ----------------------------------------------------------------------------------------------- attack

@app.command()
@_guard
def attack(
    concept: str = typer.Option(..., "--concept", "-c", help="The erased concept the attack tries to bring back."),
    prompts: Path = typer.Option(..., "--prompts", help="Prompts to attack (CSV with a 'prompt' column, or .txt); "
                                 "replay generates them as they are."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Folder for results.json, prompts.csv, images.png."),
    kind: str = typer.Option("unlearndiffatk", "--attack", help="replay, unlearndiffatk or ring-a-bell."),
    model: str = typer.Option("toy-sd", help="Toy model name, local diffusers folder or hub id."),
    edit: Optional[list[Path]] = typer.Option(None, "--edit", help="Edit folder(s) of the erased model."),
    judge: str = typer.Option("auto", help="auto, toy, nudenet or clip."),
    threshold: str = typer.Option("standard", help="NudeNet threshold: a number or standard/sensitive/strict."),
    clip: Optional[Path] = typer.Option(None, help="A local CLIP folder (the CLIP judge)."),
    limit: Optional[int] = typer.Option(None, min=1, help="Only the first N prompts."),
    attack_steps: int = typer.Option(40, min=1, help="UnlearnDiffAtk: optimisation steps per prompt."),
    generations: int = typer.Option(150, min=1, help="Ring-A-Bell: generations of the genetic search."),
    eta: float = typer.Option(3.0, min=0, callback=_finite, help="Ring-A-Bell: strength of the concept vector."),
    seed: int = typer.Option(0, min=0, help="Seed of prompt i when the file has none: seed + i."),
    overwrite: bool = typer.Option(False, help="Replace an earlier attack's --out folder (only one erasekit wrote)."),
):
    """Attack an erased model and report the attack success rate (see README: Attacks)."""
    from .api import is_toy
    from .eval.attacks import RingABellConfig, UnlearnDiffAtkConfig, run_attack
    from .eval.detectors import make_judge
    from .eval.prompts import load_prompt_file
    from .outputs import check_output_dir

    check_output_dir(out_dir, overwrite)
    prompt_set = load_prompt_file(prompts)
    if limit is not None:
        prompt_set = prompt_set.head(limit)
    texts = prompt_set.prompts
    the_judge = make_judge(judge, [concept], toy=is_toy(model), path=str(clip) if clip else None,
                           threshold=threshold)
    result = run_attack(model, edit or [], kind, concept, texts, prompt_set.seeds_or(seed), the_judge, out_dir,
                        unlearndiffatk=UnlearnDiffAtkConfig(steps=attack_steps, seed=seed),
                        ring_a_bell=RingABellConfig(generations=generations, eta=eta, seed=seed), overwrite=overwrite)
    m = result.metrics()
    out.print(f"{kind}: attack success rate {m['attack_success_rate']:.3f} over {len(texts)} prompts "
              f"(unattacked: {m['pre_attack_rate']:.3f}); wrote {out_dir}")


# ------------------------------------------------------------------------------------------------ bench

def _split(values: list[str]) -> list[str]:
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


@app.command()
@_guard
def bench(
    methods: list[str] = typer.Option(..., "--methods", "-m", help="Methods, comma-separated or repeated; "
                                      "'all' = every method that supports the model."),
    concepts: list[str] = typer.Option(..., "--concepts", "-c", help="Concepts, comma-separated or repeated."),
    model: str = typer.Option("toy-sd", help="A toy model (the suites judge with the toy classifier)."),
    suites: str = typer.Option("toy,attack", help="Suites: toy (erasure, preservation), attack (attack success)."),
    attacks: str = typer.Option("unlearndiffatk,ring-a-bell", help="Attacks the attack suite runs."),
    out_dir: Path = typer.Option(Path("bench"), "--out", "-o", help="Folder for results.json, report.html, edits."),
    n: int = typer.Option(40, min=2, help="Prompts per group of the toy suite (neighbour: n/2)."),
    n_attack: int = typer.Option(12, min=1, help="Prompts attacked per cell and attack."),
    setting: Optional[list[str]] = typer.Option(None, "--set", help="Per-method setting method.key=value; repeat."),
    seed: int = typer.Option(0, min=0),
):
    """Erase each concept with each method, evaluate and attack; writes results.json and report.html.

    Rerun the same command to resume: finished stages are skipped, failed ones retried.
    """
    from .eval.bench import BenchConfig, run_bench
    from .methods import available_methods
    from .models import load
    from .outputs import check_writable

    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} is a file; give a folder")
    check_writable(out_dir / "results.json", "--out")
    methods = _split(methods)
    if methods == ["all"]:
        family = load(model).family
        methods = [name for name, m in available_methods().items() if family in m.families and not m.alias_of]
    per_method: dict[str, dict] = {}
    for key, value in _parse_settings(setting).items():
        if "." not in key:
            raise ValueError(f"--set for bench takes method.key=value, got '{key}'")
        name, field_name = key.split(".", 1)
        per_method.setdefault(name, {})[field_name] = value
    config = BenchConfig(model=model, methods=methods, concepts=_split(concepts), out=str(out_dir),
                         suites=_split([suites]), attacks=_split([attacks]), n=n, n_attack=n_attack,
                         settings=per_method, seed=seed)
    start = time.time()
    results = run_bench(config, log=out.print)
    failed = [k for k, c in results["cells"].items() if any(v.get("status") == "failed" for v in c["stages"].values())]
    out.print(f"wrote {out_dir / 'results.json'} and {out_dir / 'report.html'} ({time.time() - start:.0f}s)")
    if failed:
        _fail(f"{len(failed)} cell(s) had a failing stage: {', '.join(failed)}; rerun to retry them", code=1)


# ------------------------------------------------------------------------------------------------- demo

@app.command()
@_guard
def demo(
    out_dir: Path = typer.Option(Path("demo-report"), "--out", "-o"),
    concept: str = typer.Option("star"),
    n: int = typer.Option(24, min=2, help="Prompts per group of the toy suite (the full suite uses 90-180)."),
    method: Optional[str] = typer.Option(None, help="Method to use (default: the best available)."),
):
    """Erase a concept from toy-sd with the best available method, evaluate it, write an HTML report."""
    from .api import erase as run_erase
    from .api import evaluate_toy, write_json
    from .eval import ToySuiteConfig, write_html_report
    from .methods import available_methods
    from .models import load
    from .outputs import open_run_folder

    start = time.time()
    # A new folder or an earlier demo's (everything in it is made again); never a folder of the user's.
    open_run_folder(out_dir, "demo", {})
    backbone = load("toy-sd")
    registered = available_methods()
    method = method or next(m for m in DEMO_PREFERENCE if m in registered and "sd" in registered[m].families)
    out.print(f"[bold]erasekit demo[/]: erasing '{concept}' from toy-sd with {method}")
    edit_dir = out_dir / f"edit-{method}-{concept}"
    edit = run_erase(backbone, method, [concept], edit_dir, overwrite=True)
    _print_edit_notes(edit)
    config = ToySuiteConfig(concept=concept, n_target=n, n_synonym=n, n_preserve=n, n_neighbour=n // 2)
    result = evaluate_toy("toy-sd", concept, [edit], config)
    payload = result.to_json() | {"model": "toy-sd", "method": method}
    write_json(out_dir / "results.json", payload)
    grids = []
    if result.images:
        k = min(8, result.n_images["target"])
        base_images, edited_images, captions = result.images["base"], result.images["edited"], result.image_prompts
        grids = [(f"prompts naming '{concept}'", base_images[:k], edited_images[:k], captions[:k]),
                 ("prompts without it", base_images[k:], edited_images[k:], captions[k:])]
    provenance = _provenance("toy-sd", method, config) | ({"note": edit.notes} if edit.notes else {})
    report = write_html_report(out_dir / "report.html", f"erasekit demo: '{concept}' erased from toy-sd with {method}",
                               [payload], grids, provenance=provenance)
    out.print(result.table())
    out.print(f"report: {report}   ({time.time() - start:.0f}s)")


def _provenance(model: str, method: str, config) -> dict:
    from .eval import provenance

    return provenance.environment() | {"model": model, "method": method, "suite": "toy", "seed": config.seed,
                                       "judge": provenance.toy_judge()}


# -------------------------------------------------------------------------------------------------- toy

@toy_app.command("train")
@_guard
def toy_train(
    what: str = typer.Argument(..., help="classifier | vae | sd | flux"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Weights folder (default: the package's)."),
    steps: Optional[int] = typer.Option(None, min=1, help="Optimisation steps (default: the trainer's)."),
    batch_size: Optional[int] = typer.Option(None, min=1),
    minutes: Optional[float] = typer.Option(None, min=0.01, callback=_finite,
                                            help="Fit the step count to this wall-clock budget."),
    device: Optional[str] = typer.Option(None, help="cpu or cuda (default: cuda when available)."),
    seed: int = typer.Option(0, min=0),
):
    """Train a toy model from scratch on the toy world (seeded)."""
    from diffusers import AutoencoderKL

    from .models import toy_weights_dir
    from .outputs import check_writable
    from .toy import train as T

    root = out_dir or toy_weights_dir()
    if what not in T.DEFAULT_CONFIGS:
        raise ValueError(f"unknown toy model '{what}'; choose classifier, vae, sd or flux")
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
            raise ValueError(f"no trained autoencoder under {root}; run `erasekit toy train vae` first")
        vae = AutoencoderKL.from_pretrained(vae_dir)
        (T.train_sd if what == "sd" else T.train_flux)(vae, root / f"toy-{what}", cfg)
    out.print(f"trained {what} -> {root}")


@toy_app.command("eval")
@_guard
def toy_eval(
    n: int = typer.Option(300, min=1, help="Images per measurement (held-out templates)."),
    steps: int = typer.Option(25, min=1, help="Sampler steps."),
    model: Optional[list[str]] = typer.Option(None, help="Toy model(s) to measure (default: all)."),
    json_path: Optional[Path] = typer.Option(None, "--json"),
):
    """Measure the judge on real images and each toy model's samples, per head."""
    from .api import toy_quality, write_json
    from .models import TOY_MODELS
    from .outputs import check_output_file

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


def _quiet_libraries() -> None:
    # Library chatter (torchvision notices, per-component loading bars) buries the CLI's own output.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    import diffusers.utils.logging as dlog
    import transformers.utils.logging as tlog

    dlog.set_verbosity_error()
    dlog.disable_progress_bar()
    tlog.set_verbosity_error()
    tlog.disable_progress_bar()


def main():
    _quiet_libraries()
    app()


if __name__ == "__main__":
    main()
