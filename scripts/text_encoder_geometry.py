"""Can a toy pipeline's text encoder tell the values of a head apart? Pairwise distances of their word slots.

For each head (shape, colour, pattern) the caption "a {colour} {pattern} {shape}" is encoded with each value of
the head in turn (the others fixed) and the script prints the L2 distances between the value word's final-layer
states, and between the EOT states. A pair the encoder barely separates (a distance far below the others) is a
pair no denoiser trained on that encoder can draw apart: world v2's first toy CLIP put "circle" and "square" at
0.62 where the other shape pairs were 2.3–6.8, and toy-sd drew both as the same blob.

    python scripts/text_encoder_geometry.py runs/v2/toy-sd   # a pipeline folder, or a toy CLIP folder

It then prints two figures about two-object captions "a {c1} {s1} and a {c2} {s2}" (random, all values distinct
per caption): (1) context — the cosine between a shape word's state encoded alone (as UCE encodes a concept:
"star") and its state in such captions, as the first and as the second object, beside the cosine between two
different shape words encoded alone; (2) binding — held-out accuracy of a linear probe reading c1 and c2 from
the first noun's slot and from the second's (is the binding in the states the denoiser attends to?).
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


def two_object_captions(n: int, seed: int = 0) -> list[tuple[int, int, int, int, str]]:
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        s1, s2 = torch.randperm(len(SHAPES), generator=g)[:2].tolist()
        c1, c2 = torch.randperm(len(COLOURS), generator=g)[:2].tolist()
        rows.append((s1, c1, s2, c2, f"a {COLOURS[c1]} {SHAPES[s1]} and a {COLOURS[c2]} {SHAPES[s2]}"))
    return rows


@torch.no_grad()
def encode(tokenizer, encoder, texts: list[str]) -> torch.Tensor:
    ids = tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt")
    return encoder(ids.input_ids)[0]


def context_similarity(tokenizer, encoder, rows, states) -> dict[str, float]:
    """``states``: the encoding of ``rows``' captions (slots: 0 start, 1 a, 2 c1, 3 s1, ... 7 s2)."""
    alone = encode(tokenizer, encoder, list(SHAPES))[:, 1]  # the slot after the start token
    cos = torch.nn.functional.cosine_similarity
    first = torch.stack([cos(states[k, 3], alone[r[0]], dim=0) for k, r in enumerate(rows)])
    second = torch.stack([cos(states[k, 7], alone[r[2]], dim=0) for k, r in enumerate(rows)])
    pairs = cos(alone.unsqueeze(0), alone.unsqueeze(1), dim=-1)[~torch.eye(len(SHAPES), dtype=torch.bool)]
    return {"first": float(first.mean()), "second": float(second.mean()), "other_word": float(pairs.mean())}


def binding_probe(rows, states, train: float = 0.75) -> dict[str, float]:
    cut = int(len(rows) * train)
    out = {}
    for slot, name in ((3, "s1"), (7, "s2")):
        x = states[:, slot]
        x = (x - x[:cut].mean(0)) / (x[:cut].std(0) + 1e-6)
        for label, target in ((1, "c1"), (3, "c2")):
            y = torch.tensor([r[label] for r in rows])
            w = torch.zeros(x.shape[1], len(COLOURS), requires_grad=True)
            opt = torch.optim.Adam([w], lr=0.05)
            for _ in range(300):
                loss = torch.nn.functional.cross_entropy(x[:cut] @ w, y[:cut]) + 1e-3 * w.pow(2).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
            out[f"{name}->{target}"] = float(((x[cut:] @ w).argmax(1) == y[cut:]).float().mean())
    return out


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
    rows = two_object_captions(1200)
    states = encode(tokenizer, encoder, [r[4] for r in rows])
    ctx = context_similarity(tokenizer, encoder, rows, states)
    print(
        f"context: a shape word's state alone vs in a caption, cosine {ctx['first']:.2f} (first object), "
        f"{ctx['second']:.2f} (second); two different shape words alone {ctx['other_word']:.2f}"
    )
    with torch.enable_grad():
        probe = binding_probe(rows, states)
    print("binding probe (held-out accuracy): " + ", ".join(f"{k} {v:.2f}" for k, v in probe.items()))


if __name__ == "__main__":
    main()
