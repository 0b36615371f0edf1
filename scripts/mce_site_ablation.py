"""Which gate sites of an MCE mask edit move which outputs? For a toy-world concept, the latent MSE of the final
sampler output (K steps, one seed) to the unedited model's, for prompts with the concept and without it: with
every site masked, with each site left out, and with each site alone. With ``--units N``, single units instead:
N that the edit switches off and N that it keeps, at every site, each switched off alone in the unedited model.

    python scripts/mce_site_ablation.py --concept star --edit runs/star [--model toy-flux] [--steps 8] [--n 24]
    python scripts/mce_site_ablation.py --concept star --edit runs/star --units 24 --n 8

A concept-selective mask moves the concept prompts' outputs far more than the others'; a site whose two numbers
are alike serves the other concepts as much as the erased one. Single units are summed over the sampled units:
if the edit chose units that serve the concept, its switched-off units move the concept prompts more, relative
to the others, than the units it keeps.
"""

from __future__ import annotations

import argparse

import torch

import erasekit.api as ek
from erasekit.cli import _quiet_libraries
from erasekit.edits import Edit
from erasekit.methods.mce import MaskHooks, gates_and_masks, rollout
from erasekit.models import load


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concept", required=True)
    parser.add_argument("--edit", required=True, help="an MCE mask edit folder")
    parser.add_argument("--model", default="toy-flux")
    parser.add_argument("--steps", type=int, default=8, help="sampler steps K")
    parser.add_argument("--n", type=int, default=24, help="prompts per group")
    parser.add_argument("--units", type=int, default=0, help="single units per site and kind (0: whole sites)")
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
            state = backbone.prepare(
                len(prompts), generator=torch.Generator().manual_seed(7), num_inference_steps=args.steps
            )
            return rollout(backbone, state, backbone.encode(prompts), uncond, guidance)[-1].latents
        finally:
            hooks.remove()

    ones = {k: torch.ones_like(v) for k, v in masks.items()}
    with torch.no_grad():
        if args.units:
            single_units(gates, masks, final, with_concept, without, args.units)
            return
        base = final(with_concept, ones), final(without, ones)

        def report(label, site_masks):
            moved = [float(((final(p, site_masks) - b) ** 2).mean()) for p, b in zip((with_concept, without), base)]
            print(f"{label:55s} with the concept {moved[0]:.3f}   without {moved[1]:.3f}", flush=True)

        report("every site masked", masks)
        for gate in gates:
            report(f"all but {gate.key}", {**masks, gate.key: ones[gate.key]})
        for gate in gates:
            report(f"only {gate.key}", {**ones, gate.key: masks[gate.key]})


def single_units(gates, masks, final, with_concept, without, per_site):
    """Switch single units off, one at a time (``per_site`` the edit switches off and as many it keeps, at every
    site); print per site the ratio of the concept prompts' mean squared move to the others', and the summed
    moves over all sites."""
    prompts = with_concept + without
    generator = torch.Generator().manual_seed(0)
    ones = {k: torch.ones_like(v) for k, v in masks.items()}
    base = final(prompts, ones)
    totals = {"switched off by the edit": [0.0, 0.0], "kept by the edit": [0.0, 0.0]}
    for gate in gates:
        site = {label: [0.0, 0.0] for label in totals}
        for label, chosen in (
            ("switched off by the edit", masks[gate.key] == 0),
            ("kept by the edit", masks[gate.key] != 0),
        ):
            units = chosen.nonzero().flatten()
            for unit in units[torch.randperm(len(units), generator=generator)[:per_site]].tolist():
                single = ones[gate.key].clone()
                single[unit] = 0
                moved = ((final(prompts, {**ones, gate.key: single}) - base) ** 2).flatten(1).mean(1)
                site[label][0] += float(moved[: len(with_concept)].mean())
                site[label][1] += float(moved[len(with_concept) :].mean())
            totals[label] = [t + v for t, v in zip(totals[label], site[label])]
        print(
            gate.key
            + "   "
            + "   ".join(f"{label}: concept/other {a / max(b, 1e-12):.2f}" for label, (a, b) in site.items()),
            flush=True,
        )
    for label, (a, b) in totals.items():
        print(f"all sites, units {label:25s} move with the concept {a:.4f}   without {b:.4f}   ratio {a / b:.2f}")


if __name__ == "__main__":
    main()
