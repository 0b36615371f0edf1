"""The v2 toy world's judge: per cell, whether an object is there and its shape, colour and pattern; per image,
the style.

Each 32×32 cell is judged on its own crop (so an object's attributes are read where the object is, never from a
neighbour), by one CNN shared across cells; the style is read from the whole image by a second, smaller CNN.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ..errors import ModelNotFoundError
from .scenes import CELL, CELLS, COLOURS, GRID, OBJECT_HEADS, PATTERNS, SCENE_SIZE, SHAPES, STYLES


def _block(cin, cout, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(8, cout), nn.SiLU())


def cells_of(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, 64, 64) -> (B·4, 3, 32, 32), cells in reading order (top left, top right, bottom left, ...)."""
    b, c = images.shape[:2]
    x = images.view(b, c, GRID, CELL, GRID, CELL).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b * CELLS, c, CELL, CELL)


class SceneJudge(ModelMixin, ConfigMixin):
    """Images in [0, 1], (B, 3, 64, 64) -> logits: ``presence`` (B, 4, 2), ``shape`` / ``colour`` / ``pattern``
    (B, 4, K), ``style`` (B, len(STYLES)). Saves and loads like the pipelines' models (safetensors)."""

    @register_to_config
    def __init__(
        self,
        width: int = 32,
        feature_dim: int = 128,
        style_width: int = 16,
        num_shapes: int = len(SHAPES),
        num_colours: int = len(COLOURS),
        num_patterns: int = len(PATTERNS),
        num_styles: int = len(STYLES),
        image_size: int = SCENE_SIZE,
    ):
        super().__init__()
        w = width
        self.cell_body = nn.Sequential(
            _block(3, w, 1),
            _block(w, w, 1),
            _block(w, 2 * w, 2),
            _block(2 * w, 2 * w, 1),
            _block(2 * w, 2 * w, 2),
            _block(2 * w, feature_dim, 2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        s = style_width
        self.style_body = nn.Sequential(
            _block(3, s, 2), _block(s, 2 * s, 2), _block(2 * s, 2 * s, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.heads = nn.ModuleDict(
            {
                "presence": nn.Linear(feature_dim, 2),
                "shape": nn.Linear(feature_dim, num_shapes),
                "colour": nn.Linear(feature_dim, num_colours),
                "pattern": nn.Linear(feature_dim, num_patterns),
            }
        )
        self.style_head = nn.Linear(2 * s, num_styles)

    def _check(self, images: torch.Tensor) -> None:
        size = self.config.image_size
        if images.ndim != 4 or images.shape[1:] != (3, size, size):
            raise ValueError(f"the scene judge reads (B, 3, {size}, {size}) images, got {tuple(images.shape)}")

    def cell_features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 4, feature_dim)."""
        self._check(images)
        return self.cell_body(cells_of(images) * 2 - 1).view(images.shape[0], CELLS, -1)

    def style_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.style_body(images * 2 - 1)

    @property
    def num_features(self) -> int:
        """The size of ``features``: four cells' embeddings and the style's."""
        return CELLS * self.config.feature_dim + 2 * self.config.style_width

    @property
    def body(self) -> nn.Sequential:
        """The convolutional layers, cells' then style's (the feature maps of ``ToyClassifierLayers``)."""
        return nn.Sequential(*self.cell_body, *self.style_body)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """One embedding per image (for Fréchet distances): the cells' features in order, then the style's."""
        return torch.cat([self.cell_features(images).flatten(1), self.style_features(images)], 1)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.cell_features(images)
        out = {name: head(f) for name, head in self.heads.items()}
        out["style"] = self.style_head(self.style_features(images))
        return out

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
        """Class indices: ``presence`` (B, 4) 0/1; ``shape``/``colour``/``pattern`` (B, 4), −1 in empty cells;
        ``style`` (B,); plus ``features`` (B, D) and each head's softmax ``probs_<head>``."""
        parts: dict[str, list[torch.Tensor]] = {}
        for chunk in images.split(batch_size):
            chunk = chunk.to(self.device, self.dtype)
            logits = self.forward(chunk)
            present = logits["presence"].argmax(-1)
            parts.setdefault("presence", []).append(present.cpu())
            for head in OBJECT_HEADS:
                idx = logits[head].argmax(-1).masked_fill(present == 0, -1)
                parts.setdefault(head, []).append(idx.cpu())
                parts.setdefault(f"probs_{head}", []).append(logits[head].float().softmax(-1).cpu())
            parts.setdefault("style", []).append(logits["style"].argmax(-1).cpu())
            parts.setdefault("probs_style", []).append(logits["style"].float().softmax(-1).cpu())
            parts.setdefault("features", []).append(self.features(chunk).float().cpu())
        return {k: torch.cat(v) for k, v in parts.items()}


def judge_loss(logits: dict[str, torch.Tensor], labels: dict[str, torch.Tensor]):
    """Cross-entropy per head (attribute heads on occupied cells only) and the batch accuracies."""
    ce = nn.functional.cross_entropy
    losses = {"presence": ce(logits["presence"].flatten(0, 1), labels["presence"].flatten())}
    acc = {"presence": (logits["presence"].argmax(-1) == labels["presence"]).float().mean()}
    occupied = labels["presence"].flatten() == 1
    for head in OBJECT_HEADS:
        lg, y = logits[head].flatten(0, 1)[occupied], labels[head].flatten()[occupied]
        losses[head] = ce(lg, y)
        acc[head] = (lg.argmax(-1) == y).float().mean()
    losses["style"] = ce(logits["style"], labels["style"])
    acc["style"] = (logits["style"].argmax(-1) == labels["style"]).float().mean()
    return sum(losses.values()), acc


def load_scene_judge(path: str | Path | None = None) -> SceneJudge:
    """The scene judge at ``path``, by default the shipped one (``toy/weights/judge``)."""
    from .weights import toy_weights_dir

    folder = Path(path) if path is not None else toy_weights_dir() / "judge"
    if not (folder / "config.json").is_file():
        raise ModelNotFoundError(f"no scene judge at {folder}; train it with `erasekit toy train judge`")
    return SceneJudge.from_pretrained(folder).eval()


@torch.no_grad()
def judge_accuracy(judge: SceneJudge, n: int = 1000, seed: int = 12345, transform=None) -> dict[str, float]:
    """Per-head accuracy on ``n`` freshly rendered scenes (presence over all cells, attributes over occupied
    ones, style per image); ``transform(images) -> images`` first (e.g. an autoencoder round trip)."""
    from .scenes import SceneStream

    stream = SceneStream(seed, bare_p=0.0)
    hits = {h: 0.0 for h in ("presence", *OBJECT_HEADS, "style")}
    counts = dict.fromkeys(hits, 0)
    for start in range(0, n, 250):
        images, _, labels = stream.batch(min(250, n - start))
        if transform is not None:
            images = transform(images).clamp(0, 1)
        pred = judge.predict(images)
        hits["presence"] += float((pred["presence"] == labels["presence"]).sum())
        counts["presence"] += labels["presence"].numel()
        occupied = labels["presence"] == 1
        for head in OBJECT_HEADS:
            hits[head] += float((pred[head][occupied] == labels[head][occupied]).sum())
            counts[head] += int(occupied.sum())
        hits["style"] += float((pred["style"] == labels["style"]).sum())
        counts["style"] += len(images)
    return {h: hits[h] / counts[h] for h in hits}


@torch.no_grad()
def concept_presence(judge: SceneJudge, images: torch.Tensor, concept: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Whether each image shows ``concept``, and a score for it: for an object concept, the largest probability
    of its value over the occupied cells (present: some occupied cell's prediction is that value); for a style,
    the style head's probability (present: the predicted style)."""
    from .scenes import concept_head

    head = concept_head(concept)
    out = judge.predict(images)
    if head == "style":
        k = STYLES.index(concept)
        return out["probs_style"][:, k], out["style"] == k
    k = OBJECT_HEADS[head].index(concept)
    occupied = out["presence"] == 1
    score = out[f"probs_{head}"][..., k].masked_fill(~occupied, 0.0).amax(1)
    return score, (out[head] == k).any(1)
