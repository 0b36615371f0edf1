"""Does MCE's step-wise recomputation keep memory flat in the number of sampler steps K? And what does baking
(pruning masked FFN units) buy at generation time?

    python benchmarks/mce_memory.py [--model toy-flux] [--size 96] [--batch 4]

1. Peak memory of one MCE training step (rollout + step-wise backward) at K = 2, 4, 8, each in a fresh process
   (max RSS on CPU, peak CUDA allocation on a GPU), next to plain back-propagation through the whole rollout for
   contrast; the ratio K=8 / K=2 should stay <= 1.2. Time per training step is printed too (it should grow
   linearly in K).
2. Generation time of a pruned model (``bake``) over the unpruned original model, and over the original with
   the same masks applied by hooks, same prompts and seeds, for masks that switch off ~60% of FFN units (about
   what the authors' released FLUX masks do).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch


def one_step(model: str, k: int, size: int, batch: int, naive: bool) -> dict:
    from erasekit.cli import _quiet_libraries
    from erasekit.methods.mce import MaskHooks, end_to_end_backward, find_gates, mce_loss, naive_backward
    from erasekit.models import load

    _quiet_libraries()
    backbone = load(model)
    gates = find_gates(backbone.denoiser, backbone.family)
    logits = {g.key: torch.full((g.units,), 0.5, device=backbone.device, requires_grad=True) for g in gates}
    hooks = MaskHooks(backbone.denoiser, gates, logits).install()
    hooks.mode = "relaxed"
    with torch.no_grad():
        cond = backbone.encode(["a red striped star"] * batch)
    state = backbone.prepare(
        batch, generator=torch.Generator().manual_seed(0), num_inference_steps=k, height=size, width=size
    )
    target = torch.zeros_like(state.latents)
    concept = torch.tensor([True, False] * (batch // 2) + [True] * (batch % 2))
    noises = [hooks.draw_noise(torch.Generator().manual_seed(i)) for i in range(k)]
    run = naive_backward if naive else end_to_end_backward
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    run(backbone, state, cond, None, None, hooks, noises, lambda f: mce_loss(f, target, concept, 0.01))
    seconds = time.perf_counter() - start
    peak = (
        torch.cuda.max_memory_allocated()
        if torch.cuda.is_available()
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    return {"k": k, "naive": naive, "seconds": seconds, "peak_mib": peak / 2**20}


def in_fresh_process(model, k, size, batch, naive) -> dict:
    code = (
        f"import json, sys; sys.path.insert(0, 'benchmarks'); from mce_memory import one_step; "
        f"print(json.dumps(one_step({model!r}, {k}, {size}, {batch}, {naive})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bake_speed(model: str, batch: int, repeats: int = 3) -> None:
    from erasekit.cli import _quiet_libraries
    from erasekit.generate import generate
    from erasekit.methods.mce import MaskHooks, bake, find_gates
    from erasekit.models import load

    _quiet_libraries()
    backbone = load(model)
    gates = find_gates(backbone.denoiser, backbone.family)
    g = torch.Generator().manual_seed(0)
    masks = {
        gate.key: (torch.rand(gate.units, generator=g) > (0.6 if gate.group == "ffn" else 0.18)).float()
        for gate in gates
    }
    prompts = ["a red striped star", "a blue dotted circle", "a green plain heart", "a purple striped square"]
    prompts = (prompts * batch)[:batch]

    def timed():
        generate(backbone, prompts, 0)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            generate(backbone, prompts, 0)
            best = min(best, time.perf_counter() - start)
        return best

    original = timed()
    hooks = MaskHooks(backbone.denoiser, gates, masks=masks).install()
    hooked = timed()
    hooks.remove()
    removed = bake(backbone.denoiser, gates, masks, prune=True)
    pruned = timed()
    ffn = [removed[gate.key] for gate in gates if gate.group == "ffn"]
    print(
        f"bake: {sum(ffn) / len(ffn):.0%} of FFN units pruned; generation {pruned:.3f} s pruned vs {original:.3f} s "
        f"unpruned (no masks) = {pruned / original:.2f}x; vs {hooked:.3f} s masked by hooks = {pruned / hooked:.2f}x"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="toy-flux")
    parser.add_argument("--size", type=int, default=96, help="image size (larger: activations dominate memory)")
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    rows = {}
    for naive in (False, True):
        for k in (2, 4, 8):
            r = in_fresh_process(args.model, k, args.size, args.batch, naive)
            rows[(naive, k)] = r
            label = "plain backprop" if naive else "step-wise     "
            print(f"{label} K={k}: peak {r['peak_mib']:.0f} MiB, {r['seconds']:.2f} s per training step", flush=True)
    for naive in (False, True):
        label = "plain backprop" if naive else "step-wise"
        ratio = rows[(naive, 8)]["peak_mib"] / rows[(naive, 2)]["peak_mib"]
        per_k = rows[(naive, 8)]["seconds"] / rows[(naive, 2)]["seconds"]
        print(f"{label}: peak memory K=8 / K=2 = {ratio:.2f}; time K=8 / K=2 = {per_k:.2f} (linear: 4.0)")
    bake_speed(args.model, args.batch)


if __name__ == "__main__":
    main()
