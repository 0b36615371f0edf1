"""Train the shipped toy models in one go (the recipe behind src/erasekit/toy/weights).

    python scripts/train_toy.py --out src/erasekit/toy/weights --device cuda --minutes 8.5

Each model is written as soon as it is trained. With --minutes, the step counts shrink to fit the budget
(time is split classifier 6%, autoencoder 16%, toy-sd 40%, toy-flux 38%).
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

import torch

from erasekit.toy.train import TrainConfig, train_classifier, train_flux, train_sd, train_vae

parser = argparse.ArgumentParser()
parser.add_argument("--out", required=True)
parser.add_argument("--device", default=None)
parser.add_argument("--minutes", type=float, default=None)
parser.add_argument("--archive", default=None, help="also tar each trained model into this folder")
parser.add_argument("--only", default="classifier,vae,sd,flux")
args = parser.parse_args()
out = Path(args.out)
only = args.only.split(",")
budget = None if args.minutes is None else args.minutes * 60
share = {"classifier": 0.06, "vae": 0.16, "sd": 0.40, "flux": 0.38}
big = args.device == "cuda"


def cfg(name, **kw):
    return TrainConfig(device=args.device, time_budget_s=None if budget is None else budget * share[name], **kw)


def archive(name):
    if args.archive:
        Path(args.archive).mkdir(parents=True, exist_ok=True)
        subprocess.run(["tar", "-cf", f"{args.archive}/{name}.tar", "-C", str(out), name], check=True)


if big:
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def report(name):
    import json

    log = json.loads(next((out / name).glob("training-*.json")).read_text())
    print(f"{name}: {log['steps_done']} steps in {log['seconds']}s, final {log['final']}", file=sys.stderr, flush=True)


t0 = time.time()
if "classifier" in only:
    train_classifier(
        out / "classifier",
        cfg("classifier", steps=4000 if big else 1500, batch_size=256 if big else 128, lr=2e-3, caption_dropout=0.0),
    )
    archive("classifier")
    report("classifier")
if "vae" in only:
    vae = train_vae(
        out / "vae",
        cfg(
            "vae", steps=8000 if big else 3000, batch_size=128 if big else 64, lr=1e-3, caption_dropout=0.0, warmup=300
        ),
    )
    archive("vae")
    report("vae")
else:
    from diffusers import AutoencoderKL

    # The shipped package keeps the autoencoder only inside the pipelines.
    vae = AutoencoderKL.from_pretrained(out / "vae" if (out / "vae").exists() else out / "toy-sd" / "vae")
if "sd" in only:
    train_sd(
        vae, out / "toy-sd", cfg("sd", steps=40000 if big else 6000, batch_size=256 if big else 64, lr=1e-3, warmup=500)
    )
    archive("toy-sd")
    report("toy-sd")
if "flux" in only:
    train_flux(
        vae,
        out / "toy-flux",
        cfg("flux", steps=40000 if big else 6000, batch_size=256 if big else 64, lr=1e-3, warmup=500),
    )
    archive("toy-flux")
    report("toy-flux")
print(f"total {time.time() - t0:.0f}s", file=sys.stderr)
