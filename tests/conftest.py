"""Shared fixtures. Tiny random pipelines are rebuilt for every test (tens of ms), so a test may edit them."""

from __future__ import annotations

import os

# Never reach for the network from the test suite; loaders must fail fast instead.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402


@pytest.fixture
def tiny_sd():
    """A random ε-prediction ``SDBackbone`` (32×32 images, DDIM) over ``toy.pipelines.tiny_sd_pipeline``."""
    from erasekit.models import from_pipeline
    from erasekit.toy.pipelines import tiny_sd_pipeline

    return from_pipeline(tiny_sd_pipeline(seed=0), name="tiny-sd")


@pytest.fixture
def tiny_flux():
    """A random ``FluxBackbone`` (32×32 images, flow-matching Euler) over ``toy.pipelines.tiny_flux_pipeline``."""
    from erasekit.models import from_pipeline
    from erasekit.toy.pipelines import tiny_flux_pipeline

    return from_pipeline(tiny_flux_pipeline(seed=0), name="tiny-flux")
