"""Images as tensors in [0, 1] and as the uint8 arrays files and detectors take."""

from __future__ import annotations

import numpy as np
import torch


def to_uint8_hwc(image: torch.Tensor) -> np.ndarray:
    """One image (3, H, W) or (1, H, W) in [0, 1] as an (H, W, 3) uint8 array."""
    image = image.detach().float().cpu().clamp(0, 1)
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    return (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
