"""Fréchet distance between two sets of feature vectors (the distance behind FID)."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
import torch


def _as_float64(feats) -> np.ndarray:
    if isinstance(feats, torch.Tensor):
        feats = feats.detach().cpu().double().numpy()
    feats = np.asarray(feats, dtype=np.float64)
    if feats.ndim != 2:
        raise ValueError(f"features must be a 2-D array (samples, dim), got shape {feats.shape}")
    if feats.shape[0] < 2:
        raise ValueError(f"need at least 2 samples per set to estimate a covariance, got {feats.shape[0]}")
    return feats


def frechet_distance(feats_a, feats_b, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets.

    ``d² = |mu_a - mu_b|² + Tr(S_a + S_b - 2 (S_a S_b)^½)``

    Args:
        feats_a, feats_b: ``(n, dim)`` tensors or arrays; the sets may differ in size.
        eps: offset added to the covariance diagonals when the product's square root is not finite, and
            always when a set has no more samples than dimensions (its covariance is then singular, and
            ``sqrtm`` of a singular product is numerically unreliable).

    Returns:
        The distance as a non-negative Python float (tiny negative round-off is clipped to 0).
    """
    a, b = _as_float64(feats_a), _as_float64(feats_b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    dim = a.shape[1]

    mu_a, mu_b = a.mean(0), b.mean(0)
    sigma_a = np.atleast_2d(np.cov(a, rowvar=False))
    sigma_b = np.atleast_2d(np.cov(b, rowvar=False))
    if min(a.shape[0], b.shape[0]) <= dim:
        offset = np.eye(dim) * eps
        sigma_a, sigma_b = sigma_a + offset, sigma_b + offset

    covmean = scipy.linalg.sqrtm(sigma_a @ sigma_b)
    if not np.isfinite(covmean).all():
        offset = np.eye(dim) * eps
        covmean = scipy.linalg.sqrtm((sigma_a + offset) @ (sigma_b + offset))

    # The product of two PSD matrices has a real square root in exact arithmetic; round-off can add a small
    # imaginary part, which carries no information.
    if np.iscomplexobj(covmean):
        imag = np.abs(covmean.imag).max()
        if imag > 1e-3 * max(1.0, np.abs(covmean.real).max()):
            warnings.warn(f"frechet_distance: discarding a large imaginary component ({imag:.3g})", stacklevel=2)
        covmean = covmean.real

    diff = mu_a - mu_b
    distance = diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2.0 * np.trace(covmean)
    return float(max(distance, 0.0))
