"""Probe a v2 toy pipeline as an instrument: the splice test and (SD) attention locality.

    python scripts/probe_toy_world.py --model runs/v2/toy-sd --judge runs/v2/judge [--pairs 24] [--json out.json]

Splice test: per head (shape, colour, pattern, style), ``--pairs`` prompt pairs × 2 seeds; for each slot group, the
share of images that show the second prompt's value when only that group of text states comes from it
(``full``: the whole second prompt; ``none``: the first prompt unspliced). The toy-world issue's lines: the word's
slot (or the word's slot and the slots after it up to EOT) ≥ 0.60, EOT + padding ≤ 0.30.
Attention locality (SD only): the share of a shape word's cross-attention mass, over occupied cells, in its own
object's cell, on ``--locality`` two-object prompts (line: ≥ 0.7), and by thirds of the denoising steps.
Binding swap (``--binding N``): N pairs of two-object prompts with the colours bound the other way round, one seed
per pair: does the image change? (``toy.probes.binding_swap``.) ``--heads ""`` skips the splice test.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from diffusers import DiffusionPipeline

import erasekit.toy.architectures  # noqa: F401  (the toy FLUX transformer class, named in model_index.json)
from erasekit.cli import _quiet_libraries
from erasekit.toy.probes import (
    attention_locality,
    binding_swap,
    binding_swap_prompts,
    locality_prompts,
    splice_pairs,
    splice_test,
)
from erasekit.toy.scene_judge import load_scene_judge


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--judge", required=True)
    parser.add_argument("--pairs", type=int, default=24)
    parser.add_argument("--locality", type=int, default=32)
    parser.add_argument("--heads", default="shape,colour,pattern,style")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, default=None)
    parser.add_argument("--binding", type=int, default=0, help="also the binding-swap test on this many pairs")
    parser.add_argument("--quality", type=int, default=0, help="also the quality figures on this many prompts")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    _quiet_libraries()
    folder = Path(args.model)
    pipe = DiffusionPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    defaults = json.loads((folder / "erasekit.json").read_text()) if (folder / "erasekit.json").is_file() else {}
    guidance = args.guidance if args.guidance is not None else defaults.get("guidance_scale", 7.5)
    judge = load_scene_judge(args.judge)
    results: dict = {"model": str(folder), "guidance": guidance, "steps": args.steps, "splice": {}}
    t0 = time.time()
    for head in filter(None, args.heads.split(",")):
        pairs = splice_pairs(head, args.pairs, seed=0)
        rates = splice_test(pipe, judge, pairs, steps=args.steps, guidance=guidance)
        results["splice"][head] = rates
        print(f"{head:8s} " + "  ".join(f"{k} {v:.2f}" for k, v in rates.items()), flush=True)
    if hasattr(pipe, "unet") and args.locality:
        loc = attention_locality(pipe, judge, locality_prompts(args.locality), steps=args.steps, guidance=guidance)
        results["locality"] = loc
        thirds = " / ".join(f"{v:.3f}" for v in loc["by_step_third"])
        print(
            f"attention locality {loc['locality']:.3f} (by thirds of the steps {thirds}; colour words "
            f"{loc['colour_locality']:.3f}) over {loc['judged']} of {loc['prompts']} prompts"
        )
    if args.binding:
        swap = binding_swap(pipe, judge, binding_swap_prompts(args.binding), steps=args.steps, guidance=guidance)
        results["binding_swap"] = swap
        print(
            f"binding swap: same cells {swap['same_cells']:.2f}; of those same shapes {swap['same_shapes']:.2f}, "
            f"same colours {swap['same_colours']:.2f} (a bag of words: near same shapes; binding: near 0)"
        )
    if args.quality:
        from erasekit.eval.scene_quality import scene_quality
        from erasekit.generate import generate
        from erasekit.models import load

        backbone = load(folder)
        quality = scene_quality(lambda p, s: generate(backbone, p, s), judge, n=args.quality)
        results["quality"] = quality
        print("quality " + "  ".join(f"{k} {v:.3f}" for k, v in quality.items() if not k.startswith("bare_acc_")))
    results["seconds"] = round(time.time() - t0, 1)
    print(f"{results['seconds']} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
