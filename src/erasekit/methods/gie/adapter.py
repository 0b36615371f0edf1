"""GIE's adapter (§1.6) and its training (§1.7, not public: our recipe).

The adapter maps a target token's mean attention in every cross-attention layer at the first step to that
token's suppression weight w. It is trained by regression on labels a judge picks: for each training prompt,
images are generated over a grid of scales, and the best scale is the one whose image no longer shows the
concept and stays closest to the plain (branch A) image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ...judges import Judge
from ...progress import progress_bar


class InhibitionAdapter(nn.Module):
    """Linear(d → 64) → ReLU → Linear(64 → 32) → ReLU → Linear(32 → 1), applied per target token."""

    def __init__(self, feature_size: int, hidden: Sequence[int] = (64, 32)):
        super().__init__()
        self.feature_size = feature_size
        layers: list[nn.Module] = []
        width = feature_size
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.shape[-1] != self.feature_size:
            raise ValueError(
                f"the adapter takes {self.feature_size} features (one per cross-attention layer); "
                f"got {features.shape[-1]}"
            )
        return self.net(features)


def best_scale(
    presence: torch.Tensor, distance: torch.Tensor, present: torch.Tensor, grid: Sequence[float]
) -> torch.Tensor:
    """Per prompt, the grid scale the judge prefers: concept absent first, then closest to the plain image.

    ``presence``, ``distance`` and ``present`` are ``(len(grid), n_prompts)``. Where no scale removes the concept,
    the one with the lowest presence score wins.
    """
    grid_t = torch.tensor(list(grid), dtype=torch.float32)
    # Absent candidates rank by distance; present ones after all absent ones, by presence score.
    key = torch.where(present, 1e6 + presence.float(), distance.float())
    return grid_t[key.argmin(dim=0)]


def fit_adapter(
    features: torch.Tensor,
    labels: torch.Tensor,
    hidden: Sequence[int] = (64, 32),
    epochs: int = 2000,
    lr: float = 1e-3,
    seed: int = 0,
) -> tuple[InhibitionAdapter, float]:
    """Full-batch MSE regression of ``labels`` (N,) on ``features`` (N, d) with Adam; returns (adapter, loss)."""
    torch.manual_seed(seed)
    adapter = InhibitionAdapter(features.shape[-1], hidden)
    optimizer = torch.optim.Adam(adapter.parameters(), lr=lr)
    x, y = features.float(), labels.float()[:, None]
    loss = torch.tensor(float("nan"))
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(adapter(x), y)
        loss.backward()
        optimizer.step()
    adapter.eval().requires_grad_(False)
    return adapter, float(loss.detach())


@torch.no_grad()
def label_prompts(
    sampler,
    judge: Judge,
    prompts: Sequence[str],
    seeds: Sequence[int],
    grid: Sequence[float],
    num_inference_steps: int,
    guidance_scale: float,
    height: int,
    width: int,
    batch_size: int = 16,
    progress: bool = True,
) -> dict[str, torch.Tensor]:
    """Features, judged best scales and judge scores for ``prompts`` (the adapter's training data)."""
    feats, presence, distance, present = [], [], [], []
    total = len(prompts) * (len(grid) + 1)
    with progress_bar("GIE: labelling scales", total=total, disable=not progress) as bar:
        for start in range(0, len(prompts), batch_size):
            chunk, chunk_seeds = list(prompts[start : start + batch_size]), seeds[start : start + batch_size]

            def gens():
                return [torch.Generator("cpu").manual_seed(int(s)) for s in chunk_seeds]

            kwargs = dict(
                num_inference_steps=num_inference_steps,
                guidance_scale=guidance_scale,
                height=height,
                width=width,
                output_type="pt",
            )
            feats.append(sampler.features(chunk, gens(), height, width, num_inference_steps))
            reference = None
            scores = ([], [], [])
            for scale in grid:
                out = sampler(chunk, gens(), weights=float(scale), return_plain=reference is None, **kwargs)
                if reference is None:
                    reference = out.plain_images
                    bar.advance(len(chunk))
                verdict = judge.judge(out.images, sampler.targets, reference)
                for acc, value in zip(scores, verdict):
                    acc.append(value)
                bar.advance(len(chunk))
            presence.append(torch.stack(scores[0]))
            present.append(torch.stack(scores[1]))
            distance.append(torch.stack(scores[2]))
    presence_t, present_t, distance_t = (torch.cat(x, dim=1) for x in (presence, present, distance))
    return {
        "features": torch.cat(feats),
        "labels": best_scale(presence_t, distance_t, present_t, grid),
        "presence": presence_t,
        "present": present_t,
        "distance": distance_t,
    }
