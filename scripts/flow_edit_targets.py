"""How far MCE's two prompt-swap targets lie from the image they replace, on toy-flux.

For concept prompts (the toy request's, K = 8 like the toy MCE training) it compares the original model's output
with (a) the output for the anchor prompt from the same x_T (``target=neutral_prompt``) and (b) that output
edited toward the anchor prompt with FlowEdit (``target=flow_edit``): the classifier checks the concept is gone
and the other heads unchanged; the latent MSE to the original says how large a change each target asks for.

    python scripts/flow_edit_targets.py --concept star [--edit-steps 28 --n-max 24]
"""

from __future__ import annotations

import argparse

import torch

import erasekit.api as ek
from erasekit.methods.mce import flow_edit, rollout
from erasekit.models import load
from erasekit.toy import world


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concept", required=True)
    parser.add_argument("--n", type=int, default=24, help="concept prompts")
    parser.add_argument("--sampler-steps", type=int, default=8)
    parser.add_argument("--edit-steps", type=int, default=28)
    parser.add_argument("--n-max", type=int, default=24)
    parser.add_argument("--source-guidance", type=float, default=1.5)
    parser.add_argument("--target-guidance", type=float, default=5.5)
    args = parser.parse_args()

    backbone, classifier = load("toy-flux"), ek.load_classifier()
    prompts = ek.toy_prompts([args.concept], n=args.n, seed=11)
    anchors = ek.toy_anchor_prompts(prompts, [args.concept], None, seed=2)
    head = world.concept_head(args.concept)
    value = world.HEADS[head].index(args.concept)
    with torch.no_grad():
        cond, anchor_cond, uncond = backbone.encode(prompts), backbone.encode(anchors), backbone.encode([""])
        state = backbone.prepare(
            len(prompts), generator=torch.Generator().manual_seed(0), num_inference_steps=args.sampler_steps
        )
        original = rollout(backbone, state, cond, uncond, None)[-1].latents
        targets = {
            "neutral_prompt": rollout(backbone, state, anchor_cond, uncond, None)[-1].latents,
            "flow_edit": flow_edit(
                backbone,
                original,
                cond,
                anchor_cond,
                uncond,
                steps=args.edit_steps,
                n_max=args.n_max,
                source_guidance=args.source_guidance,
                target_guidance=args.target_guidance,
                generator=torch.Generator().manual_seed(1),
            ),
        }
        judged = {
            name: classifier.predict(backbone.decode(z)) for name, z in [("original", original), *targets.items()]
        }
    shown = float((judged["original"][head] == value).float().mean())
    print(f"{args.concept}: {len(prompts)} prompts, K = {args.sampler_steps}; the original shows it in {shown:.3f}")
    for name, z in targets.items():
        row = {"concept gone": float((judged[name][head] != value).float().mean())}
        for other in world.HEADS:
            if other != head:
                row[f"same {other}"] = float((judged[name][other] == judged["original"][other]).float().mean())
        row["latent MSE to the original"] = float(((z - original) ** 2).mean())
        print(f"  {name:15s}", "  ".join(f"{k} {v:.3f}" for k, v in row.items()))


if __name__ == "__main__":
    main()
