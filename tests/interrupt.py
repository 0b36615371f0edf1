"""Helpers the resume and checkpoint tests share: a fresh tiny backbone, and a run killed at its first checkpoint."""

from __future__ import annotations

from erasekit.methods.mce import method as mce_method
from erasekit.methods.training import FineTuner
from erasekit.models import from_pipeline
from erasekit.toy.pipelines import tiny_flux_pipeline, tiny_sd_pipeline


def fresh_backbone(family: str):
    pipeline = tiny_sd_pipeline(seed=0) if family == "sd" else tiny_flux_pipeline(seed=0)
    return from_pipeline(pipeline, name=f"tiny-{family}")


class Killed(KeyboardInterrupt):
    """What the patched checkpoint writers raise: a Ctrl-C right after a checkpoint is on disk."""


def kill_after_first_checkpoint(monkeypatch):
    """Every checkpoint writer of the project: the run dies the moment its first checkpoint is on disk."""
    for owner, name in ((FineTuner, "save_checkpoint"), (mce_method._Checkpoint, "save")):
        real = getattr(owner, name)

        def dying(self, *args, _real=real, **kwargs):
            _real(self, *args, **kwargs)
            raise Killed

        monkeypatch.setattr(owner, name, dying)
