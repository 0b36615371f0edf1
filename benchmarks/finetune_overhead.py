"""Does the fine-tuning engine add waste? Per optimisation step, each method's time divided by the time of the
denoiser forward / forward+backward passes it needs in principle, measured in the same run on the same model.

    python benchmarks/finetune_overhead.py [--model toy-sd] [--steps 20]

Also prints peak memory (max RSS of a fresh process on CPU, or CUDA peak allocation) of one training step with
and without gradient checkpointing.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import replace

import torch

from erasekit.api import toy_prompts
from erasekit.cli import _quiet_libraries
from erasekit.methods import EraseRequest, get_method
from erasekit.models import load


def unit_times(backbone, batch, train_method, repeats=10):
    """Seconds of one denoiser forward (no grad) and one forward+backward at ``batch``."""
    x = torch.randn(batch, 4, 16, 16, device=backbone.device)
    t = backbone.random_timesteps(batch)
    with torch.no_grad():
        cond = backbone.encode(["a red star"] * batch)
    params = [p for _, p in backbone.parameters_of(train_method)]
    for p in params:
        p.requires_grad_(True)

    def fwd():
        with torch.no_grad():
            backbone.predict(x, t, cond)

    def fwd_bwd():
        backbone.predict(x, t, cond).pow(2).mean().backward()

    out = {}
    for name, fn in (("fwd", fwd), ("fwd_bwd", fwd_bwd)):
        fn()
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        out[name] = (time.perf_counter() - start) / repeats
    backbone.denoiser.requires_grad_(False)
    backbone.denoiser.zero_grad(set_to_none=True)
    return out


def passes_in_principle(method, cfg, has_keep=True):
    """(forward-only passes at batch B, forward+backward passes at batch B) one step needs, on average."""
    if method.startswith("esd"):
        # Trajectory to a uniform random stop (CFG: two forwards per step), two teacher forwards, one trained pass.
        return (cfg.sample_steps - 1) / 2 * 2 + 2, 1
    if method == "erasediff":
        mism = 1 if cfg.forget_target == "mismatched" else 0
        if cfg.mode == "paper":
            # K inner (mismatched forward + trained pass), final inner forget loss, remain pass, forget pass.
            return cfg.inner_steps * mism + (1 + mism) + mism, cfg.inner_steps + 2
        return cfg.inner_steps * mism + mism, cfg.inner_steps + 2
    if method == "abo":
        return 2 + (1 if has_keep and cfg.keep_weight > 0 else 0), 2 + (1 if has_keep and cfg.keep_weight > 0 else 0)
    raise ValueError(method)


def measure(model, method, steps):
    backbone = load(model)
    erasure = get_method(method)
    cfg = replace(erasure.make_config(toy=True), steps=steps, checkpoint_every=0)
    request = EraseRequest(
        targets=["star"], prompts=toy_prompts(["star"]), preserve_prompts=toy_prompts(["star"], seed=1, without=True)
    )
    units = unit_times(backbone, cfg.batch_size, cfg.train_method)
    edit = erasure.erase(backbone, request, cfg)
    per_step = edit.data["training"]["seconds"] / steps
    fwd, fwd_bwd = passes_in_principle(method, cfg)
    ideal = fwd * units["fwd"] + fwd_bwd * units["fwd_bwd"]
    return per_step, ideal


def peak_memory_child(model, method, checkpointing):
    _quiet_libraries()
    backbone = load(model)
    erasure = get_method(method)
    cfg = replace(erasure.make_config(toy=True), steps=2, checkpoint_every=0, gradient_checkpointing=checkpointing)
    request = EraseRequest(
        targets=["star"], prompts=toy_prompts(["star"]), preserve_prompts=toy_prompts(["star"], seed=1, without=True)
    )
    erasure.erase(backbone, request, cfg)
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="toy-sd")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--methods", default="esd-x,erasediff,abo")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(peak_memory_child(args.model, args.child[0], args.child[1] == "1")))
        return
    _quiet_libraries()
    torch.manual_seed(0)
    print(f"{'method':<10} {'step s':>8} {'passes s':>9} {'ratio':>6}   peak MiB (no ckpt / ckpt)")
    for method in args.methods.split(","):
        per_step, ideal = measure(args.model, method, args.steps)
        peaks = []
        for ckpt in ("0", "1"):
            out = subprocess.run(
                [sys.executable, __file__, "--model", args.model, "--child", method, ckpt],
                capture_output=True,
                text=True,
                check=True,
            )
            peaks.append(float(out.stdout.strip().splitlines()[-1]))
        print(
            f"{method:<10} {per_step:8.3f} {ideal:9.3f} {per_step / ideal:6.2f}   {peaks[0]:.0f} / {peaks[1]:.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
