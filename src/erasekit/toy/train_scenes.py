"""Trainers of toy world v2: the scene judge, the 4×-downsampling autoencoder, and toy-sd / toy-flux denoisers
trained against *frozen* text encoders (the toy CLIP's text tower; a separately pretrained toy T5).

No denoiser trains its text encoder, as SD 1.x and FLUX do not: a jointly trained encoder learns to copy the
caption into its padding slots (toy world v1's splice test). Two further levers make the word slots carry the
words: scenes of several objects, whose bindings no single summary slot holds, and *summary dropout* — in a share
of training samples the slots from EOT on are replaced by the empty caption's, so the denoiser must read the
words themselves.

The denoisers train on a cache of encoded scenes (the autoencoder is frozen by then), with a fresh caption drawn
for every visit of a scene: any partial description of a scene is a true caption of it.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, FluxPipeline, StableDiffusionPipeline, UNet2DConditionModel
from safetensors.torch import load_file, save_file

from ..atomic import atomic_path
from ..progress import progress_bar
from . import architectures as arch
from .attention_grounding import AttentionMaps, binding_loss, grounding_loss, grounding_targets
from .scene_judge import SceneJudge, judge_loss
from .scenes import (
    CELL,
    SCENE_SIZE,
    WORLD_VERSION,
    Scene,
    SceneObject,
    SceneStream,
    caption_for,
    random_scene,
    render_scenes,
)
from .train import TrainConfig, _augment, _device, _run, _write_generation_defaults, _write_log

DEFAULT_CONFIGS = {
    "judge": dict(steps=2500, batch_size=64, lr=2e-3, caption_dropout=0.0),
    "vae": dict(steps=3000, batch_size=48, lr=1e-3, caption_dropout=0.0, warmup=300),
    "sd": dict(steps=4000, batch_size=64, lr=1e-3, warmup=400, extra={"summary_dropout": 0.5}),
    "flux": dict(steps=4000, batch_size=64, lr=1e-3, warmup=400, extra={"summary_dropout": 0.5}),
}


def default_config(name: str, **overrides) -> TrainConfig:
    base = dict(DEFAULT_CONFIGS[name])
    if "extra" in overrides:
        overrides["extra"] = base.get("extra", {}) | overrides["extra"]
    return TrainConfig(**(base | overrides))


# ------------------------------------------------------------------------------------------------ judge


def train_judge(out_dir: str | Path, cfg: TrainConfig | None = None) -> SceneJudge:
    cfg = cfg or default_config("judge")
    dev = _device(cfg)
    torch.manual_seed(cfg.seed)
    stream = SceneStream(cfg.seed, dev, bare_p=0.0)
    aug = torch.Generator().manual_seed(cfg.seed + 1)
    model = SceneJudge().to(dev).train()

    def loss_fn(step):
        images, _, labels = stream.batch(cfg.batch_size)
        loss, acc = judge_loss(model(_augment(images, aug)), labels)
        return loss, {"loss": loss, **{f"acc_{k}": v for k, v in acc.items()}}

    log = _run(cfg, model, loss_fn, "scene judge", generators={"rng": stream.rng, "gen": stream.gen, "aug": aug})
    model.eval().cpu()
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    _write_log(out_dir, "judge", log)
    return model


# ------------------------------------------------------------------------------------------ autoencoder


def train_vae(out_dir: str | Path, cfg: TrainConfig | None = None) -> AutoencoderKL:
    """The autoencoder, mostly on random 32×32 crops of scenes (a quarter of the cost; it is convolutional), then
    on whole scenes for the last 15 % of steps (its mid-block attention and norms see whole images at use)."""
    cfg = cfg or default_config("vae")
    dev = _device(cfg)
    torch.manual_seed(cfg.seed)
    stream = SceneStream(cfg.seed, dev, bare_p=0.0)
    crops = torch.Generator().manual_seed(cfg.seed + 3)
    vae = arch.build_vae_v2().to(dev).train()
    whole_from = int(cfg.steps * 0.85)

    def loss_fn(step):
        if step < whole_from:
            images, _, _ = stream.batch(max(1, cfg.batch_size // 4))
            # Four crops per scene at random offsets (multiples of 4, the latent grid).
            ox, oy = (torch.randint(0, (SCENE_SIZE - CELL) // 4 + 1, (2, 4), generator=crops) * 4).tolist()
            images = torch.cat([images[:, :, y : y + CELL, x : x + CELL] for x, y in zip(ox, oy)])
        else:
            images, _, _ = stream.batch(max(1, cfg.batch_size // 4))
        x = images * 2 - 1
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample
        rec = F.mse_loss(recon, x) + 0.5 * F.l1_loss(recon, x)
        kl = posterior.kl().mean() / x[0].numel()
        return rec + 1e-4 * kl, {"rec": rec, "kl": kl}

    gens = {"rng": stream.rng, "gen": stream.gen, "crops": crops}
    log = _run(cfg, vae, loss_fn, "autoencoder", generators=gens)
    vae.eval()
    with torch.no_grad():
        images, _, _ = SceneStream(cfg.seed + 99, dev).batch(512)
        z = torch.cat([vae.encode(c * 2 - 1).latent_dist.mean for c in images.split(128)])
    vae.register_to_config(scaling_factor=float(1 / z.std()), shift_factor=float(z.mean()))
    log["latent_mean"], log["latent_std"] = float(z.mean()), float(z.std())
    vae.cpu()
    out_dir = Path(out_dir)
    vae.save_pretrained(out_dir)
    _write_log(out_dir, "vae", log)
    return vae


# ------------------------------------------------------------------------------------------ latent cache


def _scene_to_json(scene: Scene) -> list:
    return [scene.style, [[o.cell, o.shape, o.colour, o.pattern] for o in scene.objects]]


def _scene_from_json(data: list) -> Scene:
    style, objects = data
    return Scene(tuple(SceneObject(*o) for o in objects), style)


def _fingerprint(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().float().numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass
class LatentCache:
    """Scenes and their autoencoder latents (posterior means, unscaled), for denoiser training."""

    scenes: list[Scene]
    latents: torch.Tensor  # (N, 4, 16, 16), float16

    @classmethod
    def build(cls, vae: AutoencoderKL, n: int, seed: int, folder: str | Path | None = None, device=None):
        """Encode ``n`` training scenes (drawn as ``training_pair`` draws them); with ``folder``, reuse a cache
        made there by the same autoencoder, seed and size, or save the new one."""
        meta = {"n": n, "seed": seed, "vae": _fingerprint(vae), "world_version": WORLD_VERSION}
        if folder is not None:
            folder = Path(folder)
            meta_path = folder / "cache.json"
            if meta_path.is_file():
                saved = json.loads(meta_path.read_text())
                if saved.get("meta") == meta:
                    scenes = [_scene_from_json(s) for s in saved["scenes"]]
                    return cls(scenes, load_file(folder / "latents.safetensors")["latents"])
        rng = random.Random(seed)
        gen = torch.Generator().manual_seed(seed)
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        vae = vae.to(dev).eval()
        scenes = [_training_scene(rng) for _ in range(n)]
        parts = []
        with torch.no_grad(), progress_bar("encoding scenes", total=n) as bar:
            for start in range(0, n, 256):
                chunk = scenes[start : start + 256]
                images = render_scenes(chunk, gen, device=dev)
                parts.append(vae.encode(images * 2 - 1).latent_dist.mean.half().cpu())
                bar.update(start + len(chunk))
        cache = cls(scenes, torch.cat(parts))
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            with atomic_path(folder / "latents.safetensors") as tmp:
                save_file({"latents": cache.latents.contiguous()}, str(tmp))
            with atomic_path(folder / "cache.json") as tmp:
                Path(tmp).write_text(json.dumps({"meta": meta, "scenes": [_scene_to_json(s) for s in scenes]}))
        return cache


def _training_scene(rng: random.Random) -> Scene:
    # A tenth of the scenes are lone objects in the default style, where bare captions ("a star") fit.
    if rng.random() < 0.1:
        return random_scene(rng, n_objects=1, style="default")
    return random_scene(rng)


class _CaptionDraw:
    """Fresh captions for cached scenes, seeded; the empty caption for a share ``dropout`` (for guidance)."""

    def __init__(self, cache: LatentCache, cfg: TrainConfig):
        self.cache, self.cfg = cache, cfg
        self.rng = random.Random(cfg.seed + 5)
        self.gen = torch.Generator().manual_seed(cfg.seed + 7)

    def batch(self, dev):
        idx = torch.randint(0, len(self.cache.scenes), (self.cfg.batch_size,), generator=self.gen)
        latents = self.cache.latents[idx].float().to(dev)
        captions = [
            "" if self.rng.random() < self.cfg.caption_dropout else caption_for(self.cache.scenes[i], self.rng)
            for i in idx.tolist()
        ]
        return latents, captions, [self.cache.scenes[i] for i in idx.tolist()]


def summary_dropout(
    hidden: torch.Tensor, ids: torch.Tensor, eos_id: int, empty: torch.Tensor, drop: torch.Tensor
) -> torch.Tensor:
    """Replace the slots from the first EOS on by the empty caption's (``empty``: (1, L, D)) in the rows where
    ``drop`` is true. Pure function; the rows not dropped are returned unchanged."""
    positions = torch.arange(ids.shape[1], device=ids.device)
    first_eos = (ids == eos_id).int().argmax(1)
    mask = drop.to(ids.device).view(-1, 1) & (positions.view(1, -1) >= first_eos.view(-1, 1))
    return torch.where(mask.unsqueeze(-1), empty.to(hidden.dtype).expand_as(hidden), hidden)


def summary_swap(
    hidden: torch.Tensor,
    ids: torch.Tensor,
    eos_id: int,
    swap: torch.Tensor,
    source: torch.Tensor | None = None,
    donor: torch.Tensor | None = None,
) -> torch.Tensor:
    """In the rows where ``swap`` is true, the slots from the first EOS on become the previous row's (of
    ``source``, default ``hidden``; ``donor[i]``'s for row i when given), aligned at their EOS: a summary that
    contradicts the caption's words, so a denoiser trained on it learns to read the words. Pure function; other
    rows and slots are unchanged."""
    source = hidden if source is None else source
    rows, length = ids.shape
    positions = torch.arange(length, device=ids.device).view(1, -1)
    first_eos = (ids == eos_id).int().argmax(1).view(-1, 1)
    donor = torch.arange(rows, device=ids.device).roll(1) if donor is None else donor.to(ids.device)
    at = (first_eos[donor] + positions - first_eos).clamp(0, length - 1)
    donated = source[donor].gather(1, at.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
    mask = swap.to(ids.device).view(-1, 1) & (positions >= first_eos)
    return torch.where(mask.unsqueeze(-1), donated.to(hidden.dtype), hidden)


def same_count_donors(scenes: list[Scene]) -> torch.Tensor:
    """For each row, the nearest earlier row (cyclically) whose scene has as many objects; the row itself when
    none has. ``summary_swap``'s donors with ``summary_swap_same_count``: the swapped summary then contradicts the
    words' concepts but not the scene's object count.

    Why: a causal text encoder whose phrases carry nothing of each other (the phrase-locality CLIP) leaves the
    count to the summary slots alone — a lone "a red star" is the first phrase of "a red star and a blue circle"
    slot for slot — and swapping in the summary of a caption with another count taught toy-sd to guess it (one
    object drawn as one in 0.33 of prompts, ``runs/v2c/quality-sd-c1.json``)."""
    counts = [len(s.objects) for s in scenes]
    rows = len(counts)
    donors = []
    for i, n in enumerate(counts):
        donors.append(next((j for j in ((i - k) % rows for k in range(1, rows)) if counts[j] == n), i))
    return torch.tensor(donors)


def _swap_donors(scenes: list[Scene], extra: dict) -> torch.Tensor:
    """The row each row's swapped summary comes from: the previous one, or with ``summary_swap_same_count`` the
    nearest earlier one of a scene with as many objects (``same_count_donors``)."""
    if extra.get("summary_swap_same_count"):
        return same_count_donors(scenes)
    return torch.arange(len(scenes)).roll(1)


def _summary_choice(rows: int, generator: torch.Generator, extra: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Which rows of a batch get the empty caption's summary (``summary_dropout``) and which another caption's
    (``summary_swap``); disjoint shares."""
    p_drop, p_swap = float(extra.get("summary_dropout", 0.0)), float(extra.get("summary_swap", 0.0))
    u = torch.rand(rows, generator=generator)
    return u < p_drop, (u >= p_drop) & (u < p_drop + p_swap)


def loss_weight(snr: torch.Tensor, prediction_type: str, gamma: float = 5.0, floor: float = 0.0) -> torch.Tensor:
    """Per-sample weight of the denoising loss so that, in terms of the clean latent's error, sample t counts
    ``clamp(SNR_t, floor, gamma)`` (min-SNR-γ, Hang et al. 2023, when ``floor`` is 0). A floor above 0 gives the
    noisiest steps — where a scene's layout and shapes are decided — more weight than min-SNR's near-zero."""
    x0_weight = snr.clamp(max=gamma).clamp(min=floor)
    return x0_weight / snr if prediction_type == "epsilon" else x0_weight / (snr + 1)


def _encode(tokenizer, text_encoder, captions, max_length, dev):
    ids = tokenizer(
        captions, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt"
    ).input_ids.to(dev)
    return ids, text_encoder(ids)


# ------------------------------------------------------------------------------------- stable diffusion


def train_sd(
    vae: AutoencoderKL,
    text_encoder,
    tokenizer,
    cache: LatentCache,
    out_dir: str | Path,
    cfg: TrainConfig | None = None,
    prediction_type: str = "epsilon",
    init: UNet2DConditionModel | None = None,
) -> StableDiffusionPipeline:
    """A UNet (DDPM, min-SNR-5 weighting) against the frozen toy CLIP text tower. ``cfg.extra``:
    ``summary_dropout`` the share of samples whose EOT and padding slots are the empty caption's, ``summary_swap``
    the share whose are another caption's (of a scene with as many objects with ``summary_swap_same_count``,
    ``same_count_donors``), ``x0_weight_floor`` the least weight of a step (see ``loss_weight``),
    ``attention_heads`` the heads per attention layer (default 8), ``attention_grounding`` the weight of
    ``attention_grounding.grounding_loss`` (default 0: off), each sample weighted by ᾱ_t to the power
    ``attention_grounding_power`` (default 0.5), ``attention_binding`` the weight of
    ``attention_grounding.binding_loss`` (default 0: off). ``init``: a UNet to continue from (a fresh schedule
    and optimiser) instead of a new one, its heads regrouped when ``attention_heads`` differs."""
    cfg = cfg or default_config("sd")
    dev = _device(cfg)
    torch.manual_seed(cfg.seed)
    heads = cfg.extra.get("attention_heads")
    if init is None:
        unet = arch.build_unet_v2(prediction_type=prediction_type, heads=int(heads or 8))
    else:
        unet = init if heads is None else arch.regroup_heads(init, int(heads))
    unet = unet.to(dev).train()
    text_encoder = text_encoder.to(dev).eval().requires_grad_(False)
    noise_sched = arch.ddpm_training_scheduler(prediction_type)
    alphas = noise_sched.alphas_cumprod.to(dev)
    snr = alphas / (1 - alphas)
    draw = _CaptionDraw(cache, cfg)
    floor = float(cfg.extra.get("x0_weight_floor", 0.0))
    length = tokenizer.model_max_length
    scale = vae.config.scaling_factor
    with torch.no_grad():
        empty = _encode(tokenizer, text_encoder, [""], length, dev)[1][0]
    grounding = float(cfg.extra.get("attention_grounding", 0.0))
    grounding_power = float(cfg.extra.get("attention_grounding_power", 0.5))
    binding = float(cfg.extra.get("attention_binding", 0.0))
    recorder = AttentionMaps(unet) if grounding or binding else None

    def loss_fn(step):
        latents, captions, scenes = draw.batch(dev)
        latents = latents * scale
        with torch.no_grad():
            ids, out = _encode(tokenizer, text_encoder, captions, length, dev)
            drop, swap = _summary_choice(len(captions), draw.gen, cfg.extra)
            donor = _swap_donors(scenes, cfg.extra)
            cond = summary_dropout(out[0], ids, tokenizer.eos_token_id, empty, drop)
            cond = summary_swap(cond, ids, tokenizer.eos_token_id, swap, source=out[0], donor=donor)
        noise = torch.randn(latents.shape, generator=draw.gen).to(dev)
        t = torch.randint(0, 1000, (latents.shape[0],), generator=draw.gen).to(dev)
        if recorder is not None:
            recorder.clear()
        pred = unet(noise_sched.add_noise(latents, noise, t), t, cond).sample
        target = noise if prediction_type == "epsilon" else noise_sched.get_velocity(latents, noise, t)
        weight = loss_weight(snr[t], prediction_type, floor=floor)
        denoise = (weight * ((pred - target) ** 2).mean(dim=(1, 2, 3))).mean()
        if recorder is None:
            return denoise, {"loss": denoise}
        # Weighted by ᾱ_t^power (0.5: the signal's amplitude; where the noisy latent shows no layout yet, a cell is
        # a guess — but colour is decided in those early steps, so 0 weighs every step alike, as TokenCompose does).
        targets = grounding_targets(captions, scenes, tokenizer, length).to(dev)
        ground = grounding_loss(recorder.maps, targets, alphas[t] ** grounding_power)
        bind = binding_loss(recorder.maps, targets) if binding else ground.new_zeros(())
        return denoise + grounding * ground + binding * bind, {"loss": denoise, "grounding": ground, "binding": bind}

    try:
        log = _run(
            cfg,
            unet,
            loss_fn,
            "toy-sd",
            ema=True,
            generators={"rng": draw.rng, "gen": draw.gen},
        )
    finally:
        if recorder is not None:
            recorder.remove()
    pipe = StableDiffusionPipeline(
        vae=vae.cpu(),
        text_encoder=text_encoder.cpu(),
        tokenizer=tokenizer,
        unet=unet.eval().cpu(),
        scheduler=arch.ddim_scheduler(prediction_type),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    out_dir = Path(out_dir)
    pipe.save_pretrained(out_dir, safe_serialization=True)
    _write_generation_defaults(
        out_dir, guidance_scale=7.5, height=SCENE_SIZE, width=SCENE_SIZE, toy_world_version=WORLD_VERSION
    )
    _write_log(out_dir, "sd", log)
    return pipe


# ----------------------------------------------------------------------------------------------- flux


def train_flux(
    vae: AutoencoderKL,
    text_encoder,
    tokenizer,
    text_encoder_2,
    tokenizer_2,
    cache: LatentCache,
    out_dir: str | Path,
    cfg: TrainConfig | None = None,
    init: torch.nn.Module | None = None,
) -> FluxPipeline:
    """A ``ToyFluxTransformer2DModel`` by rectified flow matching against the frozen toy CLIP (pooled) and toy T5.
    Summary dropout replaces T5's slots from its EOS on, and the pooled CLIP vector, by the empty caption's;
    summary swap by another caption's.
    ``init``: a transformer to continue from instead of a new one."""
    cfg = cfg or default_config("flux")
    dev = _device(cfg)
    torch.manual_seed(cfg.seed)
    transformer = (init if init is not None else arch.build_flux_v2()).to(dev).train()
    text_encoder = text_encoder.to(dev).eval().requires_grad_(False)
    text_encoder_2 = text_encoder_2.to(dev).eval().requires_grad_(False)
    draw = _CaptionDraw(cache, cfg)
    shift, scale = vae.config.shift_factor, vae.config.scaling_factor
    t5_length = tokenizer_2.model_max_length
    with torch.no_grad():
        empty_pooled = _encode(tokenizer, text_encoder, [""], tokenizer.model_max_length, dev)[1].pooler_output
        empty_t5 = _encode(tokenizer_2, text_encoder_2, [""], t5_length, dev)[1][0]

    def loss_fn(step):
        latents, captions, scenes = draw.batch(dev)
        b = latents.shape[0]
        x0 = (latents - shift) * scale
        with torch.no_grad():
            pooled = _encode(tokenizer, text_encoder, captions, tokenizer.model_max_length, dev)[1].pooler_output
            ids2, out2 = _encode(tokenizer_2, text_encoder_2, captions, t5_length, dev)
            drop, swap = _summary_choice(b, draw.gen, cfg.extra)
            t5 = summary_dropout(out2[0], ids2, tokenizer_2.eos_token_id, empty_t5, drop)
            donor = _swap_donors(scenes, cfg.extra).to(dev)
            t5 = summary_swap(t5, ids2, tokenizer_2.eos_token_id, swap, source=out2[0], donor=donor)
            pooled = torch.where(swap.to(dev).view(-1, 1), pooled[donor], pooled)
            pooled = torch.where(drop.to(dev).view(-1, 1), empty_pooled.expand_as(pooled), pooled)
        noise = torch.randn(x0.shape, generator=draw.gen).to(dev)
        sigma = torch.sigmoid(torch.randn(b, generator=draw.gen)).to(dev)
        xt = (1 - sigma.view(-1, 1, 1, 1)) * x0 + sigma.view(-1, 1, 1, 1) * noise
        c, h, w = x0.shape[1:]
        pred = transformer(
            hidden_states=FluxPipeline._pack_latents(xt, b, c, h, w),
            timestep=sigma,
            pooled_projections=pooled,
            encoder_hidden_states=t5,
            txt_ids=torch.zeros(t5.shape[1], 3, device=dev),
            img_ids=FluxPipeline._prepare_latent_image_ids(b, h // 2, w // 2, dev, x0.dtype),
            return_dict=False,
        )[0]
        loss = F.mse_loss(pred, FluxPipeline._pack_latents(noise - x0, b, c, h, w))
        return loss, {"loss": loss}

    log = _run(
        cfg,
        transformer,
        loss_fn,
        "toy-flux",
        ema=True,
        generators={"rng": draw.rng, "gen": draw.gen},
    )
    pipe = FluxPipeline(
        scheduler=arch.flow_scheduler(),
        vae=vae.cpu(),
        text_encoder=text_encoder.cpu(),
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2.cpu(),
        tokenizer_2=tokenizer_2,
        transformer=transformer.eval().cpu(),
    )
    out_dir = Path(out_dir)
    pipe.save_pretrained(out_dir, safe_serialization=True)
    _write_generation_defaults(
        out_dir,
        guidance_scale=4.0,
        max_sequence_length=t5_length,
        height=SCENE_SIZE,
        width=SCENE_SIZE,
        toy_world_version=WORLD_VERSION,
    )
    _write_log(out_dir, "flux", log)
    return pipe
