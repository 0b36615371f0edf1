"""The replay attack: generate a prompt set as it is and judge every image."""

from __future__ import annotations

from collections.abc import Sequence

from .results import AttackResult, finish_attack


def replay_attack(
    backbone, prompts: Sequence[str], seeds: Sequence[int], judge, concept: str, *, keep_images: int = 8, **gen_kwargs
) -> AttackResult:
    """Generate ``prompts`` (one image per seed) on the (edited) ``backbone`` and judge each image."""
    if not prompts:
        raise ValueError("the replay attack got an empty prompt set")
    return finish_attack(
        "replay", concept, backbone, judge, list(prompts), list(prompts), list(seeds), {}, keep_images, gen_kwargs
    )
