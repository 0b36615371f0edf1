"""The toy world's trainer: classifier, autoencoder, and the two diffusion pipelines, all from scratch.

Every run is seeded; images are rendered on the fly (on the training device), so no dataset is stored.
``erasekit toy train classifier|vae|sd|flux`` calls these functions.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, FluxPipeline, StableDiffusionPipeline
from diffusers.training_utils import EMAModel

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


def _run(cfg: TrainConfig, params, loss_fn, description: str, ema_params=None) -> dict:
    """The shared loop: AdamW, warm-up + cosine, grad clipping, optional EMA, progress bar, time budget."""
    torch.manual_seed(cfg.seed)
    params = [p for p in params if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))
    ema = EMAModel(ema_params, decay=cfg.ema_decay) if ema_params is not None else None
    start = time.time()
    done = 0
    last = {}
    with progress_bar(description, total=cfg.steps) as bar:
        for step in range(10**9):
            loss, logs = loss_fn(step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            if ema is not None:
                ema.step(ema_params)
            done = step + 1
            if step % 25 == 0 or done == cfg.steps:
                last = {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in logs.items()}
                bar.update(done, **last)
            if step == 10:
                t10 = time.time()
            if cfg.time_budget_s is not None and step == 40:
                # Fit the schedule to the time budget, timed on steps 10-40 (after warm-up), rather than cut
                # a cosine schedule short.
                per_step = (time.time() - t10) / 30
                remaining = cfg.time_budget_s - (time.time() - start)
                cfg.steps = max(done + 1, min(cfg.steps, done + int(remaining / per_step)))
                bar.set_total(cfg.steps)
            if done >= cfg.steps:
                break
    if ema is not None:
        ema.copy_to(ema_params)
    return {"steps_done": done, "seconds": round(time.time() - start, 1), "final": last, "config": asdict(cfg)}


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

    log = _run(cfg, model.parameters(), loss_fn, "classifier")
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

    log = _run(cfg, vae.parameters(), loss_fn, "autoencoder")
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

    log = _run(cfg, trainable.parameters(), loss_fn, "toy-sd", ema_params=list(trainable.parameters()))
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

    log = _run(cfg, trainable.parameters(), loss_fn, "toy-flux", ema_params=list(trainable.parameters()))
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
