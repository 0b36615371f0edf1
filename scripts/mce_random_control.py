"""Are an MCE mask edit's units better chosen than random ones? The toy suite for the edit, and for masks that
switch off exactly as many units at every site, chosen at random (several draws), on the same prompts and seeds.

    python scripts/mce_random_control.py --concept star --edit runs/star [--model toy-flux] [--n 40] [--draws 2]
    python scripts/mce_random_control.py --concept star --edit runs/star --sites ffn   # random FFN units only

A mask that erases by removing what the concept needs should preserve the other concepts at least as well as
random units of the same count (which erase nothing). ``--sites ffn`` or ``norm`` keeps the other group's
sites whole in the random masks, to tell which group the damage comes from.
"""

from __future__ import annotations

import argparse
import json

import torch

import erasekit.api as ek
from erasekit.cli import _quiet_libraries
from erasekit.edits import Edit
from erasekit.eval import ToySuiteConfig
from erasekit.methods.mce import MCEConfig, gates_and_masks, mask_edit
from erasekit.models import load

SHOWN = (
    "erasure_rate",
    "synonym_erasure_rate",
    "preserve_acc",
    "preserve_drop",
    "neighbour_acc",
    "base_neighbour_acc",
    "fd_clf",
    "context_acc",  # world v2 only: the other objects of target prompts
    "base_context_acc",
)


def random_like(masks: dict[str, torch.Tensor], gates, sites: str, generator: torch.Generator) -> dict:
    """Binary masks with as many zeros per site as ``masks`` (all ones at sites outside ``sites``)."""
    out = {}
    for gate in gates:
        mask = masks[gate.key]
        if sites != "all" and gate.group != sites:
            out[gate.key] = torch.ones_like(mask)
            continue
        off = int((mask == 0).sum())
        shuffled = torch.ones(mask.numel())
        shuffled[torch.randperm(mask.numel(), generator=generator)[:off]] = 0
        out[gate.key] = shuffled.reshape(mask.shape).to(mask)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concept", required=True)
    parser.add_argument("--edit", required=True, help="an MCE mask edit folder")
    parser.add_argument("--model", default="toy-flux")
    parser.add_argument("--n", type=int, default=40, help="prompts per suite group")
    parser.add_argument("--draws", type=int, default=2, help="random mask sets")
    parser.add_argument(
        "--sites",
        choices=("all", "ffn", "norm"),
        default="all",
        help="which gate group the random masks switch units off in",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    _quiet_libraries()

    backbone = load(args.model)
    edit = Edit.load(args.edit)
    gates, masks = gates_and_masks(edit, backbone.denoiser)
    cfg = ToySuiteConfig(concept=args.concept, n_target=args.n, n_synonym=args.n, n_preserve=args.n, n_neighbour=args.n)
    base_images = {}
    base_fn = ek.generator_fn(backbone, cfg.batch_size)

    def base(prompts, seeds):  # the unedited model's images, generated once for every row
        key = (tuple(prompts), tuple(seeds))
        if key not in base_images:
            base_images[key] = base_fn(prompts, seeds)
        return base_images[key]

    def row(label, an_edit):
        share = an_edit.data["pruned_share"]
        edited = ek.load_model(args.model, [an_edit])
        metrics = ek.run_world_suite(
            backbone.toy_world_version, cfg, ek.generator_fn(edited, cfg.batch_size), base=base, progress=False
        ).metrics
        shown = {k: round(float(metrics[k]), 3) for k in SHOWN if k in metrics}
        print(
            json.dumps(
                {
                    "masks": label,
                    "ffn_off": round(share["all ffn"], 3),
                    "norm_off": round(share.get("all norm", 0.0), 3),
                    **shown,
                }
            ),
            flush=True,
        )

    row(f"edit {args.edit}", edit)
    generator = torch.Generator().manual_seed(args.seed)
    for draw in range(args.draws):
        random_masks = random_like(masks, gates, args.sites, generator)
        row(
            f"random ({args.sites} sites) #{draw}",
            mask_edit(gates, random_masks, MCEConfig(**edit.config), backbone, [args.concept]),
        )


if __name__ == "__main__":
    main()
