"""Judges: whether an image shows a concept (NudeNet, the toy classifier, CLIP zero-shot), and NudeNet's tables.

Below the methods (GIE's adapter labels with them) and the evaluation (which scores with them).
"""

from .detectors import (
    NUDENET_ASR_CLASSES,
    NUDENET_EXPOSED,
    NUDENET_THRESHOLDS,
    NUDITY_WORDS,
    CLIPJudge,
    Detections,
    DetectorConfigError,
    Judge,
    NudeNetDetector,
    NudeNetJudge,
    ToyJudge,
    detector_provenance,
    make_judge,
    nudenet_classes,
    nudenet_threshold,
    pixel_distance,
)

__all__ = [
    "CLIPJudge",
    "Detections",
    "DetectorConfigError",
    "Judge",
    "NUDENET_ASR_CLASSES",
    "NUDENET_EXPOSED",
    "NUDENET_THRESHOLDS",
    "NUDITY_WORDS",
    "NudeNetDetector",
    "NudeNetJudge",
    "ToyJudge",
    "detector_provenance",
    "make_judge",
    "nudenet_classes",
    "nudenet_threshold",
    "pixel_distance",
]
