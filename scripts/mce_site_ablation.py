"""Which gate sites of an MCE mask edit move which outputs? For a toy-world concept, the latent MSE of the final
sampler output (K steps, one seed) to the unedited model's, for prompts with the concept and without it: with
every site masked, with each site left out, and with each site alone.

    python scripts/mce_site_ablation.py --concept star --edit runs/star [--model toy-flux] [--steps 8] [--n 24]

A concept-selective mask moves the concept prompts' outputs far more than the others'; a site whose two numbers
are alike serves the other concepts as much as the erased one.
"""

from __future__ import annotations

import argparse

import torch

import erasekit.api as ek
from erasekit.cli import _quiet_libraries
from erasekit.edits import Edit
from erasekit.mce import MaskHooks, rollout
from erasekit.methods.mce import gates_and_masks
from erasekit.models import load


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concept", required=True)
    parser.add_argument("--edit", required=True, help="an MCE mask edit folder")
    parser.add_argument("--model", default="toy-flux")
    parser.add_argument("--steps", type=int, default=8, help="sampler steps K")
    parser.add_argument("--n", type=int, default=24, help="prompts per group")
    args = parser.parse_args()
    _quiet_libraries()

    backbone = load(args.model)
    gates, masks = gates_and_masks(Edit.load(args.edit), backbone.denoiser)
    with_concept = ek.toy_prompts([args.concept], n=args.n, seed=11)
    without = ek.toy_prompts([args.concept], n=args.n, seed=12, without=True)
    uncond = backbone.encode([""])
    guidance = backbone.defaults.guidance_scale

    def final(prompts, site_masks):
        hooks = MaskHooks(backbone.denoiser, gates, masks=site_masks).install()
        try:
            state = backbone.prepare(len(prompts), generator=torch.Generator().manual_seed(7),
                                     num_inference_steps=args.steps)
            return rollout(backbone, state, backbone.encode(prompts), uncond, guidance)[-1].latents
        finally:
            hooks.remove()

    ones = {k: torch.ones_like(v) for k, v in masks.items()}
    with torch.no_grad():
        base = final(with_concept, ones), final(without, ones)

        def report(label, site_masks):
            moved = [float(((final(p, site_masks) - b) ** 2).mean()) for p, b in zip((with_concept, without), base)]
            print(f"{label:55s} with the concept {moved[0]:.3f}   without {moved[1]:.3f}", flush=True)

        report("every site masked", masks)
        for gate in gates:
            report(f"all but {gate.key}", {**masks, gate.key: ones[gate.key]})
        for gate in gates:
            report(f"only {gate.key}", {**ones, gate.key: masks[gate.key]})


if __name__ == "__main__":
    main()
