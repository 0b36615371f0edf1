"""The toy world's trainer: classifier, autoencoder, and the two diffusion pipelines, all from scratch.

Every run is seeded; images are rendered on the fly (on the training device), so no dataset is stored.
``erasekit toy train classifier|vae|sd|flux`` calls these functions.

With ``TrainConfig.checkpoint_dir`` set, a run keeps one checkpoint, ``<checkpoint_dir>/checkpoint``, and a run
started again with the same configuration continues from it, to the same weights as a run never stopped. The
folder holds two files and never a pickle:

``state.safetensors``, every tensor:

* ``model/<key>``: the trained modules' ``state_dict`` (parameters and buffers);
* ``optim/<i>/<key>``: AdamW's state of the i-th trained parameter (``exp_avg``, ``exp_avg_sq``, ``step``);
* ``ema/<i>``: the EMA's shadow of the i-th trained parameter, when the run keeps an EMA;
* ``rng/<name>``: the state of each ``torch.Generator`` the run draws from (the world's and the trainer's own);
* ``rng/torch``: torch's global CPU generator; ``rng/cuda/<i>``: CUDA's, per device, once CUDA is in use.

``state.json``, everything else: ``format``, ``run`` (the trainer) and ``config`` (the configuration but for
where and how fast it runs and how often it saves, see ``_fingerprint``) which a resumed run must match; ``step``
(steps done), ``steps`` (the total, as fitted to the time budget), ``fitted`` (whether that fit is done),
``seconds`` (training time so far), ``scheduler`` (the LR scheduler's state), ``ema_step`` and ``random`` (each
``random.Random``'s state).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, FluxPipeline, StableDiffusionPipeline
from diffusers.training_utils import EMAModel
from safetensors.torch import load_file, save_file

from ..errors import ResumeMismatchError
from ..progress import progress_bar
from . import architectures as arch
from .classifier import ToyClassifier
from .tokenizers import T5_MAX_LENGTH, build_clip_tokenizer, build_t5_tokenizer
from .weights import DEFAULTS_FILE, TOY_MARKER
from .world import HEADS, IMAGE_SIZE, TRAIN_TEMPLATES, caption, labels, random_samples, render


@dataclass
class TrainConfig:
    steps: int
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    warmup: int = 200
    ema_decay: float = 0.999
    caption_dropout: float = 0.1  # share of empty captions, so classifier-free guidance works
    time_budget_s: float | None = None  # stop early (and record it) when the wall clock runs out
    device: str | None = None
    extra: dict = field(default_factory=dict)
    checkpoint_dir: str | None = None  # keep a checkpoint here, and resume from it (see the module's docstring)
    checkpoint_every: int = 200  # steps between checkpoints (0: by time only)
    checkpoint_every_s: float | None = 300.0  # ... or seconds, whichever comes first


# Defaults of each trainer (and of `erasekit toy train`), sized for a 2-core CPU.
DEFAULT_CONFIGS = {
    "classifier": dict(steps=1500, batch_size=128, lr=2e-3, caption_dropout=0.0),
    "vae": dict(steps=3000, batch_size=64, lr=1e-3, caption_dropout=0.0, warmup=300),
    "sd": dict(steps=6000, batch_size=64, lr=1e-3, warmup=500),
    "flux": dict(steps=6000, batch_size=64, lr=1e-3, warmup=500),
}


def default_config(name: str, **overrides) -> TrainConfig:
    return TrainConfig(**(DEFAULT_CONFIGS[name] | overrides))


def _device(cfg: TrainConfig) -> torch.device:
    return torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))


def _lr_lambda(cfg: TrainConfig):
    def f(step):
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return f


class _World:
    """Seeded stream of rendered batches and training captions."""

    def __init__(self, seed: int, device: torch.device):
        # Built first by every trainer, so this also seeds the models' initial weights.
        torch.manual_seed(seed)
        self.rng = random.Random(seed)
        self.gen = torch.Generator().manual_seed(seed)
        self.device = device

    def generators(self) -> dict[str, random.Random | torch.Generator]:
        return {"world_rng": self.rng, "world_gen": self.gen}

    def batch(self, n: int, dropout: float = 0.0):
        samples = random_samples(n, self.rng)
        images = render(samples, self.gen, device=self.device)
        captions = ["" if self.rng.random() < dropout else caption(s, self.rng, TRAIN_TEMPLATES) for s in samples]
        return images, captions, labels(samples, self.device)


def _augment(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Blur, noise and contrast jitter, so the judge also reads a decoder's slightly soft images."""
    b = images.shape[0]
    dev = images.device
    sigma = torch.rand(b, generator=gen).to(dev) * 0.9
    k = torch.arange(-2, 3, device=dev, dtype=images.dtype)
    kern = torch.exp(-(k.view(1, -1) ** 2) / (2 * sigma.view(-1, 1).clamp_min(1e-3) ** 2))
    kern = kern / kern.sum(-1, keepdim=True)  # (B, 5)
    x = images.reshape(1, b * 3, *images.shape[-2:])
    kx = kern.repeat_interleave(3, 0).view(b * 3, 1, 1, 5)
    x = F.conv2d(F.pad(x, (2, 2, 0, 0), mode="replicate"), kx, groups=b * 3)
    x = F.conv2d(F.pad(x, (0, 0, 2, 2), mode="replicate"), kx.transpose(-1, -2), groups=b * 3)
    x = x.view_as(images)
    contrast = 1 + (torch.rand(b, 1, 1, 1, generator=gen).to(dev) - 0.5) * 0.2
    x = (x - 0.5) * contrast + 0.5 + torch.randn(x.shape, generator=gen).to(dev) * 0.03
    return x.clamp(0, 1)


# The fields that change neither the steps a run takes nor their results, so a resumed run may change them.
_NOT_FINGERPRINTED = ("checkpoint_dir", "checkpoint_every", "checkpoint_every_s", "time_budget_s", "device")
_FORMAT = 1


def _fingerprint(cfg: TrainConfig) -> dict:
    values = {k: v for k, v in asdict(cfg).items() if k not in _NOT_FINGERPRINTED}
    return json.loads(json.dumps(values, default=str))  # as it reads back from state.json


def _save_checkpoint(folder: Path, meta: dict, modules, params, opt, sched, ema, generators) -> None:
    """Write ``folder/checkpoint`` whole or not at all: built in ``checkpoint.tmp``, then renamed into place."""
    # Cloned: save_file refuses tensors that share memory (tied embeddings), and the live ones keep training.
    tensors = {f"model/{k}": v.detach().cpu().clone() for k, v in modules.state_dict().items()}
    for i, state in opt.state_dict()["state"].items():
        tensors.update({f"optim/{i}/{k}": v.detach().cpu().clone() for k, v in state.items()})
    if ema is not None:
        tensors.update({f"ema/{i}": t.detach().cpu().clone() for i, t in enumerate(ema.shadow_params)})
    rngs = {}
    for name, g in generators.items():
        if isinstance(g, random.Random):
            rngs[name] = g.getstate()
        else:
            tensors[f"rng/{name}"] = g.get_state()
    tensors["rng/torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors.update({f"rng/cuda/{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    meta = meta | {
        "scheduler": {k: v for k, v in sched.state_dict().items() if k != "lr_lambdas"},
        "ema_step": ema.optimization_step if ema is not None else None,
        "random": rngs,
    }
    tmp, final, old = folder / "checkpoint.tmp", folder / "checkpoint", folder / "checkpoint.old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(tensors, tmp / "state.safetensors")
    (tmp / "state.json").write_text(json.dumps(meta))
    # A folder cannot be renamed onto a non-empty one: move the old checkpoint aside first (_load_checkpoint takes
    # it back if the run dies between the two renames).
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def _load_checkpoint(folder: Path, run: str, cfg: TrainConfig, modules, opt, sched, ema, generators) -> dict | None:
    """Restore the run in ``folder/checkpoint`` into the given objects and return its ``state.json``; ``None``
    (with nothing changed) when there is none. The configuration and the modules' tensors are checked before
    anything changes."""
    final, old = folder / "checkpoint", folder / "checkpoint.old"
    if not final.exists() and old.exists():
        os.replace(old, final)
    if not final.exists():
        return None
    try:
        meta = json.loads((final / "state.json").read_text())
        tensors = load_file(final / "state.safetensors")
    except (OSError, ValueError) as error:
        raise ResumeMismatchError(f"{final} is not a checkpoint this erasekit can resume ({error})") from None
    ours = {"format": _FORMAT, "run": run} | _fingerprint(cfg)
    theirs = {"format": meta.get("format"), "run": meta.get("run")} | meta.get("config", {})
    differences = [
        f"{k} is {theirs.get(k, '<unset>')!r} there, {ours.get(k, '<unset>')!r} here"
        for k in sorted(set(ours) | set(theirs))
        if theirs.get(k, "<unset>") != ours.get(k, "<unset>")
    ]
    state = modules.state_dict()
    saved = {k.removeprefix("model/"): v for k, v in tensors.items() if k.startswith("model/")}
    if set(saved) != set(state) or any(saved[k].shape != v.shape for k, v in state.items()):
        differences.append("the trained modules' tensors differ")
    if differences:
        raise ResumeMismatchError(
            f"{final} was written by another training run: {'; '.join(differences)}. "
            "Resume with the same settings, or delete the checkpoint to start afresh"
        )

    modules.load_state_dict(saved)
    opt_state = {}
    for key, value in tensors.items():
        if key.startswith("optim/"):
            _, i, name = key.split("/", 2)
            opt_state.setdefault(int(i), {})[name] = value
    opt.load_state_dict({"state": opt_state, "param_groups": opt.state_dict()["param_groups"]})
    sched.load_state_dict(meta["scheduler"] | {"lr_lambdas": [None]})
    for group, lr in zip(opt.param_groups, sched.get_last_lr()):
        group["lr"] = lr
    if ema is not None:
        with torch.no_grad():
            for i, shadow in enumerate(ema.shadow_params):
                shadow.copy_(tensors[f"ema/{i}"])
        ema.optimization_step = meta["ema_step"]
    for name, g in generators.items():
        if isinstance(g, random.Random):
            version, internal, gauss_next = meta["random"][name]
            g.setstate((version, tuple(internal), gauss_next))
        else:
            g.set_state(tensors[f"rng/{name}"])
    torch.set_rng_state(tensors["rng/torch"])
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            if f"rng/cuda/{i}" in tensors:
                torch.cuda.set_rng_state(tensors[f"rng/cuda/{i}"], i)
    return meta


def _run(
    cfg: TrainConfig,
    modules: torch.nn.Module,
    loss_fn,
    description: str,
    generators: dict[str, random.Random | torch.Generator] | None = None,
    ema: bool = False,
) -> dict:
    """The shared loop: AdamW, warm-up + cosine, grad clipping, optional EMA, progress bar, time budget.

    Trains ``modules``' parameters that require grad (an EMA of them, copied into them at the end, with ``ema``).
    ``generators`` are every random source ``loss_fn`` draws from besides torch's global one. With
    ``cfg.checkpoint_dir``, the run is checkpointed every ``cfg.checkpoint_every`` steps or
    ``cfg.checkpoint_every_s`` seconds, continues from a checkpoint it finds there (with the step count it had
    fitted to its time budget, not a new fit), and removes it once training ends: a checkpoint is left only by a
    run that did not finish. A checkpoint of another configuration raises ``ResumeMismatchError``.
    """
    cfg = replace(cfg)  # the time budget may change the step count; the caller's configuration stays as given
    generators = generators or {}
    fingerprint = _fingerprint(cfg)
    torch.manual_seed(cfg.seed)
    params = [p for p in modules.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))
    averaged = EMAModel(params, decay=cfg.ema_decay) if ema else None
    folder = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir is not None else None
    meta = None
    if folder is not None:
        meta = _load_checkpoint(folder, description, cfg, modules, opt, sched, averaged, generators)
    done, fitted, elapsed = (meta["step"], meta["fitted"], meta["seconds"]) if meta else (0, False, 0.0)
    if meta:
        cfg.steps = meta["steps"]
    start = time.time() - elapsed
    last_save = time.time()
    # Fit the schedule to the time budget, timed on 30 steps after warm-up (10, or where this run resumed), rather
    # than cut a cosine schedule short. Done once per run: a resumed run keeps the fitted step count.
    time_from = max(10, done)
    last = {}
    with progress_bar(description, total=cfg.steps) as bar:
        while done < cfg.steps:
            step = done
            loss, logs = loss_fn(step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            if averaged is not None:
                averaged.step(params)
            done = step + 1
            if step % 25 == 0 or done == cfg.steps:
                last = {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in logs.items()}
                bar.update(done, **last)
            if step == time_from:
                t0 = time.time()
            if cfg.time_budget_s is not None and not fitted and step == time_from + 30:
                per_step = (time.time() - t0) / 30
                remaining = cfg.time_budget_s - (time.time() - start)
                cfg.steps = max(done + 1, min(cfg.steps, done + int(remaining / per_step)))
                fitted = True
                bar.set_total(cfg.steps)
            due = (cfg.checkpoint_every and done % cfg.checkpoint_every == 0) or (
                cfg.checkpoint_every_s is not None and time.time() - last_save >= cfg.checkpoint_every_s
            )
            if folder is not None and done < cfg.steps and due:
                state = {"format": _FORMAT, "run": description, "config": fingerprint, "step": done}
                state |= {"steps": cfg.steps, "fitted": fitted, "seconds": time.time() - start}
                _save_checkpoint(folder, state, modules, params, opt, sched, averaged, generators)
                last_save = time.time()
    if averaged is not None:
        averaged.copy_to(params)
    if folder is not None:
        for name in ("checkpoint", "checkpoint.tmp"):
            shutil.rmtree(folder / name, ignore_errors=True)
    return {
        "steps_done": done,
        "seconds": round(time.time() - start, 1),
        "final": last,
        "config": asdict(cfg),
        "resumed_from_step": meta["step"] if meta else 0,
    }


def _write_generation_defaults(out_dir: Path, **defaults) -> None:
    """erasekit.json: how the pipeline generates by default, and the mark that it is a toy-world model (so that a
    toy pipeline trained into any folder gets the toy prompts, judge and suite)."""
    values = {TOY_MARKER: True, "height": IMAGE_SIZE, "width": IMAGE_SIZE, "num_inference_steps": 25} | defaults
    (out_dir / DEFAULTS_FILE).write_text(json.dumps(values))


def _write_log(out_dir: Path, name: str, log: dict) -> None:
    """Write the run's log; a continued run keeps the earlier runs' logs under ``history``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"training-{name}.json"
    if log.get("continued") and path.exists():
        previous = json.loads(path.read_text())
        log["history"] = previous.pop("history", []) + [previous]
    path.write_text(json.dumps(log, indent=2))


# ------------------------------------------------------------------------------------------- classifier


def train_classifier(out_dir: str | Path, cfg: TrainConfig | None = None) -> ToyClassifier:
    cfg = cfg or default_config("classifier")
    dev = _device(cfg)
    world = _World(cfg.seed, dev)
    aug_gen = torch.Generator().manual_seed(cfg.seed + 1)
    model = ToyClassifier().to(dev).train()

    def loss_fn(step):
        images, _, y = world.batch(cfg.batch_size)
        logits = model(_augment(images, aug_gen))
        losses = {h: F.cross_entropy(logits[h], y[h]) for h in HEADS}
        acc = {f"acc_{h}": (logits[h].argmax(-1) == y[h]).float().mean() for h in HEADS}
        return sum(losses.values()), {"loss": sum(losses.values()), **acc}

    log = _run(cfg, model, loss_fn, "classifier", world.generators() | {"aug_gen": aug_gen})
    model.eval().cpu()
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    _write_log(out_dir, "classifier", log)
    return model


# ------------------------------------------------------------------------------------------ autoencoder


def train_vae(out_dir: str | Path, cfg: TrainConfig | None = None) -> AutoencoderKL:
    cfg = cfg or default_config("vae")
    dev = _device(cfg)
    world = _World(cfg.seed, dev)
    vae = arch.build_vae().to(dev).train()

    def loss_fn(step):
        images, _, _ = world.batch(cfg.batch_size)
        x = images * 2 - 1
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample
        rec = F.mse_loss(recon, x) + 0.5 * F.l1_loss(recon, x)
        kl = posterior.kl().mean() / x[0].numel()
        return rec + 1e-4 * kl, {"rec": rec, "kl": kl}

    log = _run(cfg, vae, loss_fn, "autoencoder", world.generators())
    vae.eval()
    # Latent statistics set the scaling (and, for FLUX, the shift) the pipelines apply.
    with torch.no_grad():
        images, _, _ = world.batch(512)
        z = torch.cat([vae.encode(c * 2 - 1).latent_dist.sample() for c in images.split(128)])
    vae.register_to_config(scaling_factor=float(1 / z.std()), shift_factor=float(z.mean()))
    log["latent_mean"], log["latent_std"] = float(z.mean()), float(z.std())
    vae.cpu()
    out_dir = Path(out_dir)
    vae.save_pretrained(out_dir)
    _write_log(out_dir, "vae", log)
    return vae


# ------------------------------------------------------------------------------------- stable diffusion


def train_sd(
    vae: AutoencoderKL,
    out_dir: str | Path,
    cfg: TrainConfig | None = None,
    prediction_type: str = "epsilon",
    init: StableDiffusionPipeline | None = None,
) -> StableDiffusionPipeline:
    """Train a UNet and its CLIP text encoder jointly (DDPM, min-SNR-5 weighting) and save the pipeline."""
    cfg = cfg or default_config("sd")
    dev = _device(cfg)
    world = _World(cfg.seed, dev)
    if init is not None:  # continue training a saved pipeline
        tokenizer, text_encoder, unet = init.tokenizer, init.text_encoder, init.unet
    else:
        tokenizer = build_clip_tokenizer()
        text_encoder = arch.build_clip_text(len(tokenizer), pad_token_id=tokenizer.pad_token_id)
        unet = arch.build_unet(prediction_type=prediction_type)
    for module in (text_encoder, unet):
        module.to(dev).train().requires_grad_(True)
    vae = vae.to(dev).eval().requires_grad_(False)
    noise_sched = arch.ddpm_training_scheduler(prediction_type)
    alphas = noise_sched.alphas_cumprod.to(dev)
    snr = alphas / (1 - alphas)
    gen = torch.Generator().manual_seed(cfg.seed + 7)
    trainable = torch.nn.ModuleList([unet, text_encoder])

    def loss_fn(step):
        images, captions, _ = world.batch(cfg.batch_size, cfg.caption_dropout)
        with torch.no_grad():
            latents = vae.encode(images * 2 - 1).latent_dist.sample() * vae.config.scaling_factor
        ids = tokenizer(
            captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
        ).input_ids.to(dev)
        cond = text_encoder(ids)[0]
        noise = torch.randn(latents.shape, generator=gen).to(dev)
        t = torch.randint(0, 1000, (latents.shape[0],), generator=gen).to(dev)
        noisy = noise_sched.add_noise(latents, noise, t)
        pred = unet(noisy, t, cond).sample
        if prediction_type == "epsilon":
            target, weight = noise, snr[t].clamp(max=5) / snr[t]
        else:
            target, weight = noise_sched.get_velocity(latents, noise, t), snr[t].clamp(max=5) / (snr[t] + 1)
        loss = (weight * ((pred - target) ** 2).mean(dim=(1, 2, 3))).mean()
        return loss, {"loss": loss}

    log = _run(cfg, trainable, loss_fn, "toy-sd", world.generators() | {"gen": gen}, ema=True)
    log["continued"] = init is not None
    pipe = StableDiffusionPipeline(
        vae=vae.cpu(),
        text_encoder=text_encoder.eval().cpu(),
        tokenizer=tokenizer,
        unet=unet.eval().cpu(),
        scheduler=arch.ddim_scheduler(prediction_type),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    out_dir = Path(out_dir)
    pipe.save_pretrained(out_dir, safe_serialization=True)
    _write_generation_defaults(out_dir, guidance_scale=7.5)
    _write_log(out_dir, "sd", log)
    return pipe


# ----------------------------------------------------------------------------------------------- flux


def train_flux(
    vae: AutoencoderKL, out_dir: str | Path, cfg: TrainConfig | None = None, init: FluxPipeline | None = None
) -> FluxPipeline:
    """Train a FluxTransformer2DModel with its CLIP and T5 encoders jointly, by rectified flow matching."""
    cfg = cfg or default_config("flux")
    dev = _device(cfg)
    world = _World(cfg.seed, dev)
    if init is not None:  # continue training a saved pipeline
        tokenizer, tokenizer_2 = init.tokenizer, init.tokenizer_2
        text_encoder, text_encoder_2, transformer = init.text_encoder, init.text_encoder_2, init.transformer
    else:
        tokenizer, tokenizer_2 = build_clip_tokenizer(), build_t5_tokenizer()
        text_encoder = arch.build_clip_text(len(tokenizer), pad_token_id=tokenizer.pad_token_id)
        text_encoder_2 = arch.build_t5(len(tokenizer_2))
        transformer = arch.build_flux_transformer()
    for module in (text_encoder, text_encoder_2, transformer):
        module.to(dev).train().requires_grad_(True)
    vae = vae.to(dev).eval().requires_grad_(False)
    gen = torch.Generator().manual_seed(cfg.seed + 11)
    trainable = torch.nn.ModuleList([transformer, text_encoder, text_encoder_2])
    shift, scale = vae.config.shift_factor, vae.config.scaling_factor

    def loss_fn(step):
        images, captions, _ = world.batch(cfg.batch_size, cfg.caption_dropout)
        b = images.shape[0]
        with torch.no_grad():
            x0 = (vae.encode(images * 2 - 1).latent_dist.sample() - shift) * scale
        ids = tokenizer(
            captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
        ).input_ids.to(dev)
        ids2 = tokenizer_2(
            captions, padding="max_length", max_length=T5_MAX_LENGTH, truncation=True, return_tensors="pt"
        ).input_ids.to(dev)
        pooled = text_encoder(ids).pooler_output
        t5 = text_encoder_2(ids2)[0]
        noise = torch.randn(x0.shape, generator=gen).to(dev)
        sigma = torch.sigmoid(torch.randn(b, generator=gen)).to(dev)  # logit-normal, as in SD3
        xt = (1 - sigma.view(-1, 1, 1, 1)) * x0 + sigma.view(-1, 1, 1, 1) * noise
        c, h, w = x0.shape[1:]
        packed = FluxPipeline._pack_latents(xt, b, c, h, w)
        img_ids = FluxPipeline._prepare_latent_image_ids(b, h // 2, w // 2, dev, x0.dtype)
        txt_ids = torch.zeros(t5.shape[1], 3, device=dev, dtype=x0.dtype)
        pred = transformer(
            hidden_states=packed,
            timestep=sigma,
            pooled_projections=pooled,
            encoder_hidden_states=t5,
            txt_ids=txt_ids,
            img_ids=img_ids,
            return_dict=False,
        )[0]
        target = FluxPipeline._pack_latents(noise - x0, b, c, h, w)
        loss = F.mse_loss(pred, target)
        return loss, {"loss": loss}

    log = _run(cfg, trainable, loss_fn, "toy-flux", world.generators() | {"gen": gen}, ema=True)
    log["continued"] = init is not None
    pipe = FluxPipeline(
        scheduler=arch.flow_scheduler(),
        vae=vae.cpu(),
        text_encoder=text_encoder.eval().cpu(),
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2.eval().cpu(),
        tokenizer_2=tokenizer_2,
        transformer=transformer.eval().cpu(),
    )
    out_dir = Path(out_dir)
    pipe.save_pretrained(out_dir, safe_serialization=True)
    _write_generation_defaults(out_dir, guidance_scale=4.0, max_sequence_length=T5_MAX_LENGTH)
    _write_log(out_dir, "flux", log)
    return pipe
