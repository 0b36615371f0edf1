"""Toy world v2, trained one stage at a time into one folder, resumably: the recipe behind the v2 toy weights.

Stages and what each needs first: ``judge`` (nothing), ``vae`` (nothing), ``clip`` (nothing), ``t5`` (clip),
``sd`` (vae, clip), ``flux`` (vae, clip, t5). Each writes ``<out>/<stage's folder>`` (``STAGE_FOLDERS``); the
denoisers assemble whole pipelines there from the stages before them. Checkpoints and the latent cache live in
``<out>/.work``: a killed stage, run again with the same arguments, continues from its last checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import InvalidArgumentError, ModelNotFoundError
from ..outputs import OutputError

STAGES = ("judge", "vae", "clip", "t5", "sd", "flux")
STAGE_FOLDERS = {"judge": "judge", "vae": "vae", "clip": "clip", "t5": "t5", "sd": "toy-sd", "flux": "toy-flux"}
# the text towers' token-level terms (train_toy_clip's and train_toy_t5's)
CLIP_SETTINGS = {"phrase_locality", "word_locality", "word_margin", "phrase_readout"}
NEEDS = {"t5": ("clip",), "sd": ("vae", "clip"), "flux": ("vae", "clip", "t5")}
WORK_DIR = ".work"
CACHE_SIZE = 40_000  # encoded scenes the denoisers train on (a fresh caption per visit)


def train_stage(
    stage: str,
    out: str | Path,
    *,
    steps: int | None = None,
    minutes: float | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    device: str | None = None,
    settings: dict[str, Any] | None = None,
    cache_size: int = CACHE_SIZE,
    name: str | None = None,
    overwrite: bool = False,
    init_from: str | Path | None = None,
    lr: float | None = None,
) -> Path:
    """Train ``stage`` into ``out`` and return the folder it wrote.

    ``steps`` (else the trainer's default) or ``minutes`` (the step count fitted to a wall-clock budget, measured
    on the first steps); ``settings``: the trainer's extra settings (``summary_dropout`` for sd and flux,
    ``x0_weight_floor`` for sd).
    ``name``: the output folder's name instead of the stage's (a variant, e.g. ``sd-p0.5`` for another summary
    dropout; its checkpoints are kept apart). A stage whose folder exists is refused unless ``overwrite``.
    ``init_from``: for sd and flux a trained world-v2 pipeline folder whose denoiser the run continues from, for
    clip a trained toy CLIP folder, for t5 a trained toy T5 folder; a fresh optimiser and a short warm-up — more
    steps for a finished model.
    ``lr``: the peak learning rate of any trained stage (default the trainer's).
    """
    if stage not in STAGES:
        raise InvalidArgumentError(f"unknown toy-world stage {stage!r}; choose one of {', '.join(STAGES)}")
    out = Path(out)
    folder_name = name or STAGE_FOLDERS[stage]
    if not folder_name or "/" in folder_name or folder_name.startswith("."):
        raise InvalidArgumentError(f"name must be a plain folder name, got {name!r}")
    target = out / folder_name
    if target.exists() and not overwrite:
        raise OutputError(f"{target} exists; pass overwrite (--overwrite) to train {stage} again")
    missing = [need for need in NEEDS.get(stage, ()) if not (out / STAGE_FOLDERS[need]).is_dir()]
    if missing:
        raise ModelNotFoundError(
            f"stage {stage} needs {', '.join(missing)} in {out}: train "
            + ", then ".join(f"`erasekit toy train {m} --out {out}`" for m in missing)
            + " first"
        )
    for need in NEEDS.get(stage, ()):
        _check_world_v2(out / STAGE_FOLDERS[need], need)
    takes = CLIP_SETTINGS if stage in ("clip", "t5") else set()
    if settings and stage not in ("sd", "flux") and not set(settings) <= takes:
        raise InvalidArgumentError(f"stage {stage} takes no extra settings (got {', '.join(settings)})")
    if settings and stage in ("sd", "flux") and CLIP_SETTINGS & set(settings):
        names = "/".join(sorted(CLIP_SETTINGS))
        raise InvalidArgumentError(f"{names} are settings of clip and t5 (the text towers' training)")
    if settings and stage == "flux" and "attention_heads" in settings:
        raise InvalidArgumentError("attention_heads is a setting of sd (its UNet); flux's heads are fixed")
    attention_losses = {"attention_grounding", "attention_grounding_power", "attention_binding"}
    if settings and stage == "flux" and attention_losses & set(settings):
        raise InvalidArgumentError("attention_grounding/-binding are settings of sd (its UNet's cross-attention)")
    if settings and float(settings.get("summary_dropout", 0)) + float(settings.get("summary_swap", 0)) > 1:
        raise InvalidArgumentError("summary_dropout + summary_swap is a share of the samples: at most 1")
    if settings and stage == "sd" and "attention_heads" in settings:
        from .architectures import UNET_V2_CHANNELS, check_heads

        check_heads(int(settings["attention_heads"]), UNET_V2_CHANNELS)  # before the latent cache is built
    if settings and stage == "flux" and "x0_weight_floor" in settings:
        # Flow matching's velocity loss already weighs a step's clean-latent error by 1/σ² ≥ 1.
        raise InvalidArgumentError("x0_weight_floor is a setting of sd (DDPM) training; flux has none")
    init = None if init_from is None else _load_init(stage, Path(init_from))
    checkpoints = out / WORK_DIR / "checkpoints" / folder_name
    budget = None if minutes is None else minutes * 60
    if stage in ("clip", "t5"):
        from . import clip

        common = dict(
            steps=steps,
            batch_size=batch_size,
            seed=seed,
            device=device,
            time_budget_s=budget,
            eval_every=100,
            checkpoint_dir=checkpoints,
        )
        terms = {k: float(v) for k, v in (settings or {}).items()}
        warmup = None if init is None else 50
        if stage == "clip":
            clip.train_toy_clip(target, **common, init=init, lr=lr, warmup=warmup, **terms)
        else:
            frozen = clip.load_toy_clip(out / "clip")[0]
            clip.train_toy_t5(frozen, target, **common, init=init, lr=lr, warmup=warmup, **terms)
        return target

    from . import train_scenes as T

    overrides: dict[str, Any] = {"seed": seed, "device": device, "checkpoint_dir": str(checkpoints)}
    if budget is not None:
        overrides["time_budget_s"] = budget
    if steps is not None:
        overrides["steps"] = steps
    if batch_size is not None:
        overrides["batch_size"] = batch_size
    if lr is not None:
        overrides["lr"] = lr
    if settings:
        overrides["extra"] = dict(settings)
    if init is not None:
        overrides["warmup"] = 100  # the weights are trained already: a short warm-up for the fresh optimiser
    cfg = T.default_config(stage, **overrides)
    if stage == "judge":
        T.train_judge(target, cfg)
    elif stage == "vae":
        T.train_vae(target, cfg)
    else:
        _train_denoiser(stage, out, target, cfg, seed, device, cache_size, init)
    return target


DENOISERS = {"sd": "unet", "flux": "transformer"}


def _load_init(stage: str, folder: Path):
    """What a stage continues training from: the denoiser of a world-v2 pipeline folder (sd, flux), a toy CLIP
    folder (clip), or a toy T5 folder (t5: its encoder and pooled projection)."""
    if stage == "clip":
        from .clip import load_toy_clip

        _check_world_v2(folder, "clip")
        return load_toy_clip(folder)[0]
    if stage == "t5":
        from .clip import load_toy_t5

        t5, _, head = load_toy_t5(folder)
        return t5, head
    if stage not in DENOISERS:
        raise InvalidArgumentError(
            f"--init-from continues a denoiser (sd, flux) or a text tower (clip, t5); stage {stage} has none"
        )
    sub = folder / DENOISERS[stage]
    if not (sub / "config.json").is_file():
        raise ModelNotFoundError(f"{folder} has no {DENOISERS[stage]}/ to continue {stage} from: a toy-{stage} folder?")
    from .weights import toy_world_version

    if toy_world_version(folder) != 2:
        raise ModelNotFoundError(f"{folder} is not a world-v2 toy model (no toy_world_version 2 in erasekit.json)")
    if stage == "sd":
        from diffusers import UNet2DConditionModel

        return UNet2DConditionModel.from_pretrained(sub)
    from .architectures import ToyFluxTransformer2DModel

    return ToyFluxTransformer2DModel.from_pretrained(sub)


def _check_world_v2(folder: Path, stage: str) -> None:
    """A prerequisite trained for world v1 (a 32-px, 2×-downsampling autoencoder; a text encoder without the
    vision tower) would train a denoiser on the wrong latents or words: refuse it."""
    from .scenes import SCENE_SIZE

    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        raise ModelNotFoundError(f"{folder} has no readable config.json; train `{stage}` again") from None
    if stage == "vae":
        factor = 2 ** (len(config.get("block_out_channels", ())) - 1)
        if config.get("sample_size") != SCENE_SIZE or factor != 4:
            raise ModelNotFoundError(
                f"{folder} is not a world-v2 autoencoder ({config.get('sample_size')}-px images, {factor}× "
                f"downsampling; world v2 has {SCENE_SIZE}-px scenes, 4×): a world-v1 model? Train "
                f"`erasekit toy train vae` into this folder's parent"
            )
    if stage == "clip" and not ({"text_config", "vision_config"} <= set(config)):
        raise ModelNotFoundError(
            f"{folder} is not the world-v2 toy CLIP (a CLIPModel with text and vision towers): a world-v1 text "
            "encoder? Train `erasekit toy train clip`"
        )


def _train_denoiser(stage, out: Path, target: Path, cfg, seed: int, device, cache_size: int, init=None) -> None:
    from diffusers import AutoencoderKL

    from . import clip
    from . import train_scenes as T

    vae = AutoencoderKL.from_pretrained(out / "vae")
    cache = T.LatentCache.build(vae, cache_size, seed + 1000, out / WORK_DIR / "cache", device=device)
    model, tokenizer = clip.load_toy_clip(out / "clip")
    if stage == "sd":
        T.train_sd(vae, clip.clip_text_encoder(model), tokenizer, cache, target, cfg, init=init)
    else:
        t5, tokenizer_2, _ = clip.load_toy_t5(out / "t5")
        T.train_flux(vae, clip.clip_text_encoder(model), tokenizer, t5, tokenizer_2, cache, target, cfg, init=init)


def stage_status(out: str | Path) -> dict[str, str]:
    """Per stage: ``done``, ``in progress (step i of n)`` from its checkpoint, or ``not started``."""
    out = Path(out)
    status = {}
    for stage, folder in STAGE_FOLDERS.items():
        state = out / WORK_DIR / "checkpoints" / folder / "checkpoint" / "state.json"
        if (out / folder).is_dir():
            status[stage] = "done"
        elif state.is_file():
            saved = json.loads(state.read_text())
            status[stage] = f"in progress (step {saved.get('step')} of {saved.get('steps')})"
        else:
            status[stage] = "not started"
    return status
