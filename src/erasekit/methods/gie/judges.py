"""Judges that pick the best suppression scale for GIE's adapter labels (GPT-4o ranks them in the paper).

They live in ``erasekit.eval.detectors`` next to the evaluation's NudeNet detector; this module keeps the old
import path working.
"""

from ...eval.detectors import (
    NUDENET_EXPOSED,
    NUDITY_WORDS,
    CLIPJudge,
    Judge,
    NudeNetJudge,
    ToyJudge,
    make_judge,
    pixel_distance,
)

__all__ = [
    "NUDENET_EXPOSED", "NUDITY_WORDS", "CLIPJudge", "Judge", "NudeNetJudge", "ToyJudge", "make_judge",
    "pixel_distance",
]
