"""Pack a toy-training checkpoint small enough to commit, and unpack it to resume the run elsewhere.

    python scripts/pack_checkpoint.py pack   runs/v2/.work/checkpoints/toy-sd/checkpoint  packed/toy-sd
    python scripts/pack_checkpoint.py unpack packed/toy-sd  runs/v2/.work/checkpoints/toy-sd/checkpoint

A checkpoint of ``toy.train._run`` holds the model, its EMA and Adam's two moments in float32 (four copies of the
weights). Packing keeps the model and the EMA as they are and stores the moments in bfloat16 (float32's range,
so the second moment's small values do not flush to zero as they would in float16): about 3/4 of the size. The
resumed run then differs from an uninterrupted one by the moments' rounding only. The pack is one file per part
(``model``, ``ema``, ``optim``; the random states go with the model), each well under the 25 MB a tracked file may
have. For a session that may lose its ignored folders before a long run ends.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

STATE, META = "state.safetensors", "state.json"


PARTS = ("model", "ema", "optim")


def _part(key: str) -> str:
    head = key.split("/", 1)[0]
    return head if head in PARTS else "model"


def pack(checkpoint: Path, out: Path) -> None:
    tensors = load_file(checkpoint / STATE)
    out.mkdir(parents=True, exist_ok=True)
    for part in PARTS:
        chosen = {
            k: v.to(torch.bfloat16) if part == "optim" and v.is_floating_point() and v.ndim else v
            for k, v in tensors.items()
            if _part(k) == part
        }
        save_file(chosen, str(out / f"{part}.safetensors"), metadata={"packed": "optim-bf16"})
    shutil.copy(checkpoint / META, out / META)


def unpack(packed: Path, checkpoint: Path) -> None:
    tensors = {}
    for part in PARTS:
        tensors.update(load_file(packed / f"{part}.safetensors"))
    restored = {k: v.float() if v.dtype == torch.bfloat16 else v for k, v in tensors.items()}
    checkpoint.mkdir(parents=True, exist_ok=True)
    save_file(restored, str(checkpoint / STATE))
    shutil.copy(packed / META, checkpoint / META)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("pack", "unpack"))
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    args = parser.parse_args()
    (pack if args.what == "pack" else unpack)(args.source, args.target)
    size = sum(p.stat().st_size for p in args.target.glob("*.safetensors")) / 2**20
    print(f"{args.what}ed {args.source} -> {args.target} ({size:.1f} MiB)")


if __name__ == "__main__":
    main()
