"""What does GIE cost at inference? Wall time of a GIE generation divided by the plain pipeline's, same prompts,
steps, batch and seeds, measured in the same run.

    python benchmarks/gie_overhead.py [--steps 25] [--batch 4] [--repeats 3]

Two models: the shipped toy-sd, and a random UNet with SD 1.x's layout (4 levels, 2 layers per block, 16
cross-attention layers) built from config. The reference design (both branches on every step, an extra target
attention everywhere) costs about 2.1x; the target here is <= 1.9x. Printed for a fixed scale (no feature pass),
for an adapter (one extra feature pass per call), and, as a same-run stand-in for the reference design, for the
fixed scale with branch A kept on every step and decoded too (``return_plain=True``, what the released code
returns).
"""

from __future__ import annotations

import argparse

import torch
from diffusers import StableDiffusionPipeline, UNet2DConditionModel
from timing import timed

from erasekit.cli import _quiet_libraries
from erasekit.methods.gie import InhibitedSampler, InhibitionAdapter, count_cross_attention_layers
from erasekit.models import load
from erasekit.toy import architectures as arch
from erasekit.toy.tokenizers import build_clip_tokenizer


def sd1_shaped_pipeline(seed: int = 0) -> StableDiffusionPipeline:
    """SD 1.x's UNet layout at toy width: 64 px images, 32x32 latents, 16 cross-attention layers."""
    torch.manual_seed(seed)
    tokenizer = build_clip_tokenizer()
    text_encoder = arch.build_clip_text(len(tokenizer), "tiny", pad_token_id=tokenizer.pad_token_id)
    unet = UNet2DConditionModel(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64, 64, 64),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=text_encoder.config.hidden_size,
        attention_head_dim=8,
        norm_num_groups=8,
    ).eval()
    pipe = StableDiffusionPipeline(
        vae=arch.build_vae("tiny"),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=arch.ddim_scheduler("epsilon"),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def measure(name, pipe, height, steps, batch, repeats):
    prompts = [
        "a red striped star on a blue background",
        "a green dotted circle",
        "a purple plain heart",
        "a yellow striped square",
    ] * ((batch + 3) // 4)
    prompts = prompts[:batch]

    def gens():
        return [torch.Generator().manual_seed(i) for i in range(batch)]

    kwargs = dict(num_inference_steps=steps, guidance_scale=7.5, height=height, width=height, output_type="pt")
    fixed = InhibitedSampler(pipe, ["star"], default_scale=-2.0)
    adapter = InhibitionAdapter(count_cross_attention_layers(pipe.unet))
    learned = InhibitedSampler(pipe, ["star"], adapter=adapter)
    with torch.no_grad():
        best = timed(
            {
                "plain": lambda: pipe(prompts, generator=gens(), **kwargs),
                "fixed": lambda: fixed(prompts, gens(), **kwargs),
                "learned": lambda: learned(prompts, gens(), **kwargs),
                "both": lambda: fixed(prompts, gens(), return_plain=True, **kwargs),
            },
            repeats,
        )
    plain_s, fixed_s, learned_s, both_s = best["plain"], best["fixed"], best["learned"], best["both"]
    fixed.remove()
    learned.remove()
    layers = count_cross_attention_layers(pipe.unet)
    print(
        f"{name} ({layers} cross-attention layers, {steps} steps, batch {batch}): plain {plain_s:.3f} s; "
        f"GIE fixed scale {fixed_s:.3f} s = {fixed_s / plain_s:.2f}x; "
        f"GIE adapter {learned_s:.3f} s = {learned_s / plain_s:.2f}x; "
        f"both branches on every step {both_s:.3f} s = {both_s / plain_s:.2f}x",
        flush=True,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    _quiet_libraries()
    toy = load("toy-sd")
    measure("toy-sd", toy.pipeline, toy.defaults.height, args.steps, args.batch, args.repeats)
    measure("SD 1.x-shaped random UNet", sd1_shaped_pipeline(), 64, args.steps, args.batch, args.repeats)


if __name__ == "__main__":
    main()
