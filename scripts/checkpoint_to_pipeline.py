"""Turn a toy denoiser's training checkpoint into a pipeline, to measure a run part-way (a learning curve).

    python scripts/checkpoint_to_pipeline.py --checkpoint runs/v2/.work/checkpoints/toy-sd/checkpoint \
        --like runs/v2/toy-sd --out runs/diag/toy-sd-1600

``--like`` is a finished pipeline of the same architecture (its encoders, VAE and scheduler are copied); the
denoiser's trained parameters take the checkpoint's EMA (``--raw``: the optimised weights, ``model/<name>``). Packed
checkpoints (``training-state/``) are unpacked first with ``scripts/pack_checkpoint.py unpack``.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a folder holding state.safetensors")
    parser.add_argument("--like", required=True, help="a finished toy pipeline of the same architecture")
    parser.add_argument("--out", required=True)
    parser.add_argument("--raw", action="store_true", help="the optimised weights instead of their EMA")
    args = parser.parse_args()
    like, out = Path(args.like), Path(args.out)
    if out.exists():
        raise SystemExit(f"{out} exists; remove it first")
    part = "unet" if (like / "unet").is_dir() else "transformer"
    if part == "unet":
        from diffusers import UNet2DConditionModel as Denoiser
    else:
        from diffusers import FluxTransformer2DModel as Denoiser
    denoiser = Denoiser.from_pretrained(like / part)
    tensors = load_file(Path(args.checkpoint) / "state.safetensors")
    if args.raw:
        weights = {k[len("model/") :]: v for k, v in tensors.items() if k.startswith("model/")}
        denoiser.load_state_dict(weights)
    else:
        params = [p for p in denoiser.parameters() if p.requires_grad]
        stored = [k for k in tensors if k.startswith("ema/")]
        if len(stored) != len(params):
            raise SystemExit(f"the checkpoint holds {len(stored)} EMA tensors, the {part} {len(params)} parameters")
        with torch.no_grad():
            for i, p in enumerate(params):
                t = tensors[f"ema/{i}"]
                if t.shape != p.shape:
                    raise SystemExit(f"ema/{i}: shape {tuple(t.shape)} vs the {part}'s {tuple(p.shape)}")
                p.copy_(t)
    shutil.copytree(like, out)
    shutil.rmtree(out / part)
    denoiser.save_pretrained(out / part)
    print(f"{out}: {part} from {args.checkpoint} ({'raw' if args.raw else 'EMA'})")


if __name__ == "__main__":
    main()
