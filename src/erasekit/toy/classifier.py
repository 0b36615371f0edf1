"""The toy world's judge: a small CNN with one head per attribute (shape, colour, pattern)."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ..errors import ModelNotFoundError
from .weights import toy_weights_dir
from .world import COLOURS, HEADS, PATTERNS, SHAPES


class ToyClassifier(ModelMixin, ConfigMixin):
    """Images in [0, 1], (B, 3, H, W) -> logits per head; ``features`` gives the penultimate embedding.

    Built on diffusers' ``ModelMixin`` so that it saves and loads like every other model of a toy pipeline
    (``save_pretrained`` / ``from_pretrained``, safetensors only).
    """

    @register_to_config
    def __init__(
        self,
        width: int = 32,
        feature_dim: int = 128,
        num_shapes: int = len(SHAPES),
        num_colours: int = len(COLOURS),
        num_patterns: int = len(PATTERNS),
    ):
        super().__init__()
        w = width

        def block(cin, cout, stride):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(8, cout), nn.SiLU())

        self.body = nn.Sequential(
            block(3, w, 1),
            block(w, w, 1),
            block(w, 2 * w, 2),
            block(2 * w, 2 * w, 1),
            block(2 * w, 2 * w, 2),
            block(2 * w, feature_dim, 2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.heads = nn.ModuleDict(
            {
                "shape": nn.Linear(feature_dim, num_shapes),
                "colour": nn.Linear(feature_dim, num_colours),
                "pattern": nn.Linear(feature_dim, num_patterns),
            }
        )

    @property
    def num_features(self) -> int:
        """The size of ``features``."""
        return self.config.feature_dim

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images * 2 - 1)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.features(images)
        return {name: head(f) for name, head in self.heads.items()}

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
        """Predicted class index per head, plus ``features`` (B, feature_dim)."""
        out: dict[str, list[torch.Tensor]] = {k: [] for k in (*HEADS, "features")}
        for chunk in images.split(batch_size):
            chunk = chunk.to(self.device, self.dtype)
            f = self.features(chunk)
            out["features"].append(f.float().cpu())
            for name, head in self.heads.items():
                out[name].append(head(f).argmax(-1).cpu())
        return {k: torch.cat(v) if v else torch.zeros(0) for k, v in out.items()}


def load_classifier(path: str | Path | None = None) -> ToyClassifier:
    folder = Path(path) if path else toy_weights_dir() / "classifier"
    if not (folder / "config.json").is_file():
        raise ModelNotFoundError(f"no toy classifier at {folder}; train it with `erasekit toy train classifier`")
    return ToyClassifier.from_pretrained(folder).eval()
