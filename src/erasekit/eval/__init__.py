"""Evaluation: the toy suite (exact erasure metrics on the toy world), Fréchet distance and HTML reports."""

from ..judges import (
    NUDENET_ASR_CLASSES,
    NUDENET_EXPOSED,
    NUDENET_THRESHOLDS,
    Detections,
    DetectorConfigError,
    NudeNetDetector,
    detector_provenance,
    nudenet_threshold,
)
from .metrics import (
    ClassifierFeatures,
    CLIPImageFeatures,
    CLIPVisionLayers,
    IncomparableReportsError,
    MetricUnavailableError,
    ToyClassifierLayers,
    clip_score,
    frechet_distance,
    lpips_style_distance,
    nudity_removal_rate,
    nudity_report,
    ssim,
)
from .metrics import (
    fid as fid_score,  # `fid` would shadow the submodule erasekit.eval.fid
)
from .report import image_grid, write_html_report
from .toy_suite import (
    GenerateFn,
    PromptItem,
    ToySuiteConfig,
    ToySuiteResult,
    build_prompt_set,
    run_toy_suite,
)

__all__ = [
    "GenerateFn",
    "PromptItem",
    "ToySuiteConfig",
    "ToySuiteResult",
    "build_prompt_set",
    "frechet_distance",
    "image_grid",
    "run_toy_suite",
    "write_html_report",
    "NUDENET_ASR_CLASSES",
    "NUDENET_EXPOSED",
    "NUDENET_THRESHOLDS",
    "DetectorConfigError",
    "Detections",
    "NudeNetDetector",
    "detector_provenance",
    "nudenet_threshold",
    "ClassifierFeatures",
    "CLIPImageFeatures",
    "CLIPVisionLayers",
    "IncomparableReportsError",
    "MetricUnavailableError",
    "ToyClassifierLayers",
    "clip_score",
    "fid_score",
    "lpips_style_distance",
    "nudity_removal_rate",
    "nudity_report",
    "ssim",
]
