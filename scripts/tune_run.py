"""One tuning row of the README: erase with settings over the toy defaults, then the toy suite at N prompts a group.

    python scripts/tune_run.py toy-flux mce star '{"target": "flow_edit"}' 40 [--anchor C] [--preserve C,...]

The unedited model's images are cached (``--cache-dir``, default the system's temporary folder) per model, concept
and size, so a series of runs generates them once. This is the script the README's tuning tables call
``/tmp/tune3.py`` / ``/tmp/tune4.py`` (those were this code outside the repository; ANCHOR and PRESERVE were
environment variables there).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

import erasekit.api as ek
from erasekit.cli import _quiet_libraries
from erasekit.eval import ToySuiteConfig
from erasekit.models import load


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("method")
    parser.add_argument("concept")
    parser.add_argument("settings", nargs="?", default="{}", help="JSON object of settings")
    parser.add_argument("n", nargs="?", type=int, default=40, help="prompts per group")
    parser.add_argument("--anchor")
    parser.add_argument("--preserve", default="", help="comma-separated concepts")
    parser.add_argument("--cache-dir", default=tempfile.gettempdir())
    args = parser.parse_args()
    _quiet_libraries()
    settings = json.loads(args.settings)
    preserve = [c for c in args.preserve.split(",") if c]

    start = time.time()
    edit = ek.erase(args.model, args.method, [args.concept], settings=settings, anchor=args.anchor, preserve=preserve)
    train_s = time.time() - start

    # The cache holds only tensors keyed by (prompt, seed) that this script wrote itself.
    cache_path = Path(args.cache_dir) / f"basecache-{args.model}-{args.concept}-{args.n}.pt"
    cache = torch.load(cache_path, weights_only=True) if cache_path.exists() else {}
    base = ek.generator_fn(load(args.model), 50)

    def cached(prompts, seeds):
        missing = [(p, s) for p, s in zip(prompts, seeds) if (p, s) not in cache]
        if missing:
            for key, image in zip(missing, base([p for p, _ in missing], [s for _, s in missing])):
                cache[key] = image
            torch.save(cache, cache_path)
        return torch.stack([cache[(p, s)] for p, s in zip(prompts, seeds)])

    edited = ek.load_model(args.model, [edit])
    config = ToySuiteConfig(
        concept=args.concept, n_target=args.n, n_synonym=args.n, n_preserve=args.n, n_neighbour=args.n
    )
    metrics = ek.run_world_suite(
        edited.toy_world_version, config, ek.generator_fn(edited, 50), base=cached, progress=False
    ).metrics
    keys = (
        "erasure_rate",
        "synonym_erasure_rate",
        "preserve_acc",
        "preserve_drop",
        "neighbour_acc",
        "base_neighbour_acc",
        "fd_clf",
    )
    print(
        args.model,
        args.method,
        args.concept,
        "anchor",
        args.anchor,
        "preserve",
        preserve,
        json.dumps(settings),
        f"train {train_s:.0f}s",
        {k: round(metrics[k], 3) for k in keys},
        flush=True,
    )


if __name__ == "__main__":
    main()
