"""Train toy world v2, one stage at a time, resumably (the recipe behind the v2 toy weights).

    python scripts/train_toy_v2.py --out runs/v2 --stage judge --minutes 20
    python scripts/train_toy_v2.py --out runs/v2 --stage sd --minutes 90 --set summary_dropout=0.5

Stages: judge, vae, clip, t5, cache, sd, flux (clip before t5; vae before cache; cache before sd and flux). A
stage whose output folder exists is skipped (delete it to retrain). A killed stage resumes from its checkpoint
under OUT/checkpoints/STAGE when run again with the same arguments. --minutes fits the step count to a time
budget (measured on the first steps); --threads sets torch's CPU threads.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from erasekit.toy import train_scenes as T

parser = argparse.ArgumentParser()
parser.add_argument("--out", required=True)
parser.add_argument("--stage", required=True, choices=["judge", "vae", "clip", "t5", "cache", "sd", "flux"])
parser.add_argument("--name", default=None, help="output folder name (default: the stage's)")
parser.add_argument("--minutes", type=float, default=None)
parser.add_argument("--steps", type=int, default=None)
parser.add_argument("--batch-size", type=int, default=None)
parser.add_argument("--threads", type=int, default=None)
parser.add_argument("--device", default=None)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--cache-size", type=int, default=40000)
parser.add_argument("--set", action="append", default=[], help="extra setting key=value (e.g. summary_dropout=0.5)")
args = parser.parse_args()
if args.threads:
    torch.set_num_threads(args.threads)
out = Path(args.out)
name = args.name or {"sd": "toy-sd", "flux": "toy-flux"}.get(args.stage, args.stage)
target = out / name
if target.exists() and args.stage != "cache":
    print(f"{target} exists; skipping", file=sys.stderr)
    sys.exit(0)


def cfg(stage):
    overrides = {"seed": args.seed, "device": args.device, "checkpoint_dir": str(out / "checkpoints" / name)}
    if args.minutes is not None:
        overrides["time_budget_s"] = args.minutes * 60
    if args.steps is not None:
        overrides["steps"] = args.steps
    if args.batch_size is not None:
        overrides["batch_size"] = args.batch_size
    extra = {}
    for item in args.set:
        key, value = item.split("=", 1)
        extra[key] = json.loads(value)
    if extra:
        overrides["extra"] = extra
    return T.default_config(stage, **overrides)


def cache():
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(out / "vae")
    return T.LatentCache.build(vae, args.cache_size, args.seed + 1000, out / "cache", device=args.device), vae


t0 = time.time()
if args.stage == "judge":
    T.train_judge(target, cfg("judge"))
elif args.stage == "vae":
    T.train_vae(target, cfg("vae"))
elif args.stage in ("clip", "t5"):
    from erasekit.toy import clip

    settings = dict(
        steps=args.steps,
        batch_size=args.batch_size,
        seed=args.seed,
        device=args.device,
        time_budget_s=None if args.minutes is None else args.minutes * 60,
        eval_every=100,
        checkpoint_dir=out / "checkpoints" / name,
    )
    if args.stage == "clip":
        clip.train_toy_clip(target, **settings)
    else:
        clip.train_toy_t5(clip.load_toy_clip(out / "clip")[0], target, **settings)
elif args.stage == "cache":
    cache()
elif args.stage == "sd":
    from erasekit.toy import clip

    latents, vae = cache()
    model, tokenizer = clip.load_toy_clip(out / "clip")
    T.train_sd(vae, clip.clip_text_encoder(model), tokenizer, latents, target, cfg("sd"))
elif args.stage == "flux":
    from erasekit.toy import clip

    latents, vae = cache()
    model, tokenizer = clip.load_toy_clip(out / "clip")
    t5, tokenizer_2, _ = clip.load_toy_t5(out / "t5")
    T.train_flux(vae, clip.clip_text_encoder(model), tokenizer, t5, tokenizer_2, latents, target, cfg("flux"))
print(f"{args.stage}: done in {time.time() - t0:.0f} s -> {target}", file=sys.stderr)
