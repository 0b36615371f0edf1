"""Does a mask edit's damage come from the late sampling steps? The toy suite for an MCE mask edit applied only
while the noise level σ is at least a cut (the early steps, where the layout and shape form), masks off below it.

    python scripts/mce_step_window.py --concept star --edit runs/star [--cuts 0,0.3,0.5,0.7] [--n 40]

Cut 0 is the edit as trained (masks at every step). If the concept were decided early and the other heads'
damage (on toy-flux: the pattern) late, a cut would keep the erasure and lose the damage.
"""

from __future__ import annotations

import argparse
import json

import erasekit.api as ek
from erasekit.cli import _quiet_libraries
from erasekit.edits import Edit
from erasekit.eval import ToySuiteConfig
from erasekit.methods.mce.method import _HOOKS
from erasekit.pipeline_state import existing_state

SHOWN = (
    "erasure_rate",
    "synonym_erasure_rate",
    "preserve_drop",
    "preserve_acc_pattern",
    "neighbour_acc",
    "base_neighbour_acc",
)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concept", required=True)
    parser.add_argument("--edit", required=True, help="an MCE mask edit folder")
    parser.add_argument("--model", default="toy-flux")
    parser.add_argument("--cuts", default="0,0.3,0.5,0.7", help="σ below which the masks are off")
    parser.add_argument("--n", type=int, default=40, help="prompts per suite group")
    args = parser.parse_args()
    _quiet_libraries()

    cfg = ToySuiteConfig(concept=args.concept, n_target=args.n, n_synonym=args.n, n_preserve=args.n, n_neighbour=args.n)
    unedited = ek.load_model(args.model, [])
    base_fn = ek.generator_fn(unedited, cfg.batch_size)
    base_images = {}

    def base(prompts, seeds):  # the unedited model's images, generated once for every cut
        key = (tuple(prompts), tuple(seeds))
        if key not in base_images:
            base_images[key] = base_fn(prompts, seeds)
        return base_images[key]

    edited = ek.load_model(args.model, [Edit.load(args.edit)])
    hooks = existing_state(edited.pipeline).things(_HOOKS)
    window = {"cut": 0.0}

    def switch(module, call_args, kwargs):  # FluxBackbone passes σ in [0, 1] as the transformer's timestep
        sigma = float(kwargs["timestep"].flatten()[0])
        for h in hooks:
            h.mode = "hard" if sigma >= window["cut"] else "off"

    edited.denoiser.register_forward_pre_hook(switch, with_kwargs=True)
    for cut in (float(c) for c in args.cuts.split(",")):
        window["cut"] = cut
        metrics = ek.run_world_suite(
            unedited.toy_world_version, cfg, ek.generator_fn(edited, cfg.batch_size), base=base, progress=False
        ).metrics
        print(json.dumps({"cut": cut, **{k: round(float(metrics[k]), 3) for k in SHOWN if k in metrics}}), flush=True)


if __name__ == "__main__":
    main()
