"""Can a toy pipeline's text encoder tell the values of a head apart? Pairwise distances of their word slots.

For each head (shape, colour, pattern) the caption "a {colour} {pattern} {shape}" is encoded with each value of
the head in turn (the others fixed) and the script prints the L2 distances between the value word's final-layer
states, and between the EOT states. A pair the encoder barely separates (a distance far below the others) is a
pair no denoiser trained on that encoder can draw apart: world v2's first toy CLIP put "circle" and "square" at
0.62 where the other shape pairs were 2.3–6.8, and toy-sd drew both as the same blob.

    python scripts/text_encoder_geometry.py runs/v2/toy-sd   # a pipeline folder, or a toy CLIP folder
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from erasekit.toy.world import COLOURS, PATTERNS, SHAPES

BASE = {"shape": "star", "colour": "red", "pattern": "plain"}
VALUES = {"shape": SHAPES, "colour": COLOURS, "pattern": PATTERNS}


def encoder_of(folder: Path):
    if (folder / "text_encoder").is_dir():
        from transformers import CLIPTextModel, CLIPTokenizer

        return CLIPTokenizer.from_pretrained(folder / "tokenizer"), CLIPTextModel.from_pretrained(
            folder / "text_encoder"
        )
    from erasekit.toy.clip import clip_text_encoder, load_toy_clip

    clip, tokenizer = load_toy_clip(folder)
    return tokenizer, clip_text_encoder(clip)


@torch.no_grad()
def distances(tokenizer, encoder, head: str) -> tuple[torch.Tensor, torch.Tensor]:
    prompts = []
    for value in VALUES[head]:
        words = BASE | {head: value}
        prompts.append(f"a {words['colour']} {words['pattern']} {words['shape']}")
    ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt")
    ids = ids.input_ids
    states = encoder(ids)[0]
    slot = {"colour": 2, "pattern": 3, "shape": 4}[head]  # after the start token and "a"
    eot = (ids == tokenizer.eos_token_id).int().argmax(1)
    words = states[:, slot]
    ends = states[torch.arange(len(prompts)), eot]
    return torch.cdist(words, words), torch.cdist(ends, ends)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", type=Path)
    args = ap.parse_args()
    tokenizer, encoder = encoder_of(args.folder)
    encoder.eval()
    for head, values in VALUES.items():
        word, end = distances(tokenizer, encoder, head)
        off = ~torch.eye(len(values), dtype=torch.bool)
        i, j = divmod(int(word.masked_fill(~off, float("inf")).argmin()), len(values))
        print(
            f"{head}: word-slot distance min {word[off].min():.2f} ({values[i]}–{values[j]}), "
            f"median {word[off].median():.2f}; EOT min {end[off].min():.2f}, median {end[off].median():.2f}"
        )
        print("   " + " ".join(f"{v[:8]:>8s}" for v in values))
        for v, row in zip(values, word):
            print(f"   {v[:8]:>8s} " + " ".join(f"{x:8.2f}" for x in row.tolist()))


if __name__ == "__main__":
    main()
