"""Does evaluation generate as fast as diffusers itself? Images per second of `erasekit evaluate`'s generation
(the prompt-set suite's path: erasekit.generate with one seeded generator per image, then a PNG per image written
as it is made) divided by a plain diffusers pipeline call's on the same prompts, seeds, steps and batch size,
measured in the same run. Target: >= 0.95.

    python benchmarks/eval_throughput.py [--n 32] [--batch 8] [--steps 25] [--repeats 3]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import torch
from timing import timed

from erasekit.cli import _quiet_libraries
from erasekit.eval.prompt_suite import PromptSuiteConfig, _generate_missing
from erasekit.models import load
from erasekit.prompt_sets import PromptSet
from erasekit.toy import world


def measure(model: str, n: int, batch: int, steps: int, repeats: int) -> None:
    import random

    backbone = load(model)
    rng = random.Random(0)
    prompts = [world.caption(s, rng) for s in world.random_samples(n, rng)]
    seeds = list(range(n))
    d = backbone.defaults
    prompt_set = PromptSet("bench", prompts, seeds, [None] * n, "generated", "-")
    config = PromptSuiteConfig(concept="star", steps=steps, batch_size=batch)
    scratch = Path(tempfile.mkdtemp(prefix="erasekit-throughput-"))

    def plain():
        for start in range(0, n, batch):
            gens = [torch.Generator("cpu").manual_seed(s) for s in seeds[start : start + batch]]
            kwargs = dict(
                prompt=prompts[start : start + batch],
                generator=gens,
                num_inference_steps=steps,
                height=d.height,
                width=d.width,
                output_type="pt",
            )
            if backbone.family == "flux":
                kwargs["max_sequence_length"] = d.max_sequence_length or 256
                if d.guidance_scale > 1:
                    kwargs.update(true_cfg_scale=d.guidance_scale, negative_prompt=[""] * len(gens))
            else:
                kwargs["guidance_scale"] = d.guidance_scale
            backbone.pipeline(**kwargs)

    def ours():
        shutil.rmtree(scratch / "images", ignore_errors=True)
        _generate_missing(backbone, prompt_set, range(n), seeds, scratch, "edited", config)

    best = timed({"plain": plain, "erasekit": ours}, repeats)
    shutil.rmtree(scratch, ignore_errors=True)
    ratio = (n / best["erasekit"]) / (n / best["plain"])
    print(
        f"{model}: {n} images, batch {batch}, {steps} steps: plain diffusers {n / best['plain']:.2f} img/s, "
        f"erasekit evaluate {n / best['erasekit']:.2f} img/s -> ratio {ratio:.3f} (target >= 0.95)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default="toy-sd,toy-flux")
    args = parser.parse_args()
    _quiet_libraries()
    for model in args.models.split(","):
        measure(model, args.n, args.batch, args.steps, args.repeats)


if __name__ == "__main__":
    main()
