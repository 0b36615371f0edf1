"""The v2 training stages: each in order into one folder, refusing a missing prerequisite or a finished stage,
and the denoisers assembled into pipelines that load as world-v2 toy models."""

import pytest

from erasekit.errors import InvalidArgumentError, ModelNotFoundError
from erasekit.models import load, toy_world_version
from erasekit.outputs import OutputError
from erasekit.toy.stages import STAGES, WORK_DIR, stage_status, train_stage


def test_stages_chain_into_v2_pipelines(tmp_path):
    out = tmp_path / "world"
    with pytest.raises(ModelNotFoundError, match="needs vae, clip, t5"):
        train_stage("flux", out)
    with pytest.raises(InvalidArgumentError, match="takes no extra settings"):
        train_stage("judge", out, settings={"summary_dropout": 0.5})
    assert set(stage_status(out).values()) == {"not started"}
    for stage in ("judge", "vae", "clip", "t5"):
        train_stage(stage, out, steps=1, batch_size=4)
    for stage in ("sd", "flux"):
        train_stage(stage, out, steps=1, batch_size=2, cache_size=4, settings={"summary_dropout": 0.9})
    assert set(stage_status(out).values()) == {"done"} and list(stage_status(out)) == list(STAGES)
    assert (out / WORK_DIR / "cache" / "cache.json").is_file()
    for name in ("toy-sd", "toy-flux"):
        assert toy_world_version(out / name) == 2
        assert load(out / name).is_toy
    with pytest.raises(OutputError, match="exists"):
        train_stage("judge", out, steps=1)
