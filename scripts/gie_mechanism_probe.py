"""Does the toy world have the mechanism GIE needs? GIE at fixed scales on two-object prompts naming a shape.

    python scripts/gie_mechanism_probe.py --model runs/v2/toy-sd --judge runs/v2/judge [--concept star] [--n 40]
    python scripts/gie_mechanism_probe.py ... --method uce --variant contexts=none --variant contexts=prompts,lamb=1

Any other method is measured the same way, once per ``--variant`` (its settings, ``key=value`` joined by commas).

For each scale, the share of images in which the judge finds the target shape nowhere (``removed``) and in which
the other object is still there with its shape, colour and pattern (``other_kept``), next to the unedited
model's, and ``removed`` apart by where the target's phrase stands in the caption (``removed_first``: the target
named first, the other object's words after it; ``removed_last``: named last). The toy-world issue's line: some
scale in [−8, −2] removes the shape from ≥ 80 % of the prompts while the other object survives in ≥ 90 %.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch

import erasekit.api as ek
from erasekit.cli import _quiet_libraries
from erasekit.eval.scene_suite import match_objects
from erasekit.generate import generate
from erasekit.models import load
from erasekit.toy.scene_judge import load_scene_judge
from erasekit.toy.scenes import OBJECT_HEADS, SHAPES, Scene, SceneObject, caption, object_word_positions


def prompts(concept: str, n: int, seed: int = 0):
    rng = random.Random(seed)
    target = SHAPES.index(concept)
    out = []
    for _ in range(n):
        cells = rng.sample(range(4), 2)
        other = rng.choice([s for s in range(len(SHAPES)) if s != target])
        objs = (
            SceneObject(cells[0], target, rng.randrange(6), rng.randrange(3)),
            SceneObject(cells[1], other, rng.randrange(6), rng.randrange(3)),
        )
        out.append((caption(Scene(objs), rng), objs))
    return out


def judge_rows(judge, images, items, target):
    out = judge.predict(images)
    rows = []
    for i, (_, objs) in enumerate(items):
        occupied = [c for c in range(4) if out["presence"][i, c] == 1]
        cells = [[int(out[h][i, c]) for h in OBJECT_HEADS] for c in occupied]
        other = [objs[1].shape, objs[1].colour, objs[1].pattern]
        removed = all(cell[0] != target for cell in cells)
        assigned = match_objects([other], cells)[0]
        rows.append((removed, assigned is not None and cells[assigned] == other))
    n = len(rows)
    out = {"removed": sum(r for r, _ in rows) / n, "other_kept": sum(k for _, k in rows) / n}
    places = [target_phrase(item) for item in items]
    for where, index in (("first", 0), ("last", 1)):
        picked = [r for (r, _), place in zip(rows, places) if place == index]
        out[f"removed_{where}"] = sum(picked) / max(1, len(picked))
    return out


def target_phrase(item) -> int | None:
    """Where the target object's phrase (object 0 of the scene) stands among the caption's two phrases."""
    text, objs = item
    order = [o for o, _ in object_word_positions(text, Scene(objs))]
    return order.index(0) if len(order) == 2 else None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--judge", required=True)
    parser.add_argument("--concept", default="star")
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--scales", default="-2,-4,-8")
    parser.add_argument("--method", default="gie")
    parser.add_argument("--variant", action="append", default=None, help="settings key=value[,key=value]")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    _quiet_libraries()
    judge = load_scene_judge(args.judge)
    items = prompts(args.concept, args.n)
    texts, seeds = [t for t, _ in items], list(range(len(items)))
    target = SHAPES.index(args.concept)
    backbone = load(args.model)
    results = {"unedited": judge_rows(judge, generate(backbone, texts, seeds), items, target)}
    print(f"unedited: {results['unedited']}", flush=True)
    if args.variant:
        variants = {v: dict(kv.split("=", 1) for kv in v.split(",")) for v in args.variant}
    else:
        variants = {f"w={float(s):g}": {"scale": float(s)} for s in args.scales.split(",")}
    for name, settings in variants.items():
        edit = ek.erase(backbone, args.method, [args.concept], settings=settings)
        ek.apply_edit(edit, backbone.pipeline)
        try:
            results[name] = judge_rows(judge, generate(backbone, texts, seeds), items, target)
        finally:
            if edit.kind == "weight_delta":  # changed weights come off only by reloading the model
                backbone = load(args.model)
            else:
                ek.remove_edit(edit, backbone.pipeline)
        print(f"{args.method} {name}: {results[name]}", flush=True)
    if args.json:
        Path(args.json).write_text(
            json.dumps({"concept": args.concept, "method": args.method, "n": args.n, **results}, indent=2)
        )


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
