"""Prompt-set loaders against the public files in ../shared/datasets (or $ERASEKIT_DATASETS); skipped where absent."""

import os
from pathlib import Path

import pytest

from erasekit.prompt_sets import PromptSetError, load_prompt_set

DATA = Path(os.environ.get("ERASEKIT_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"))
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason="../shared/datasets is not present")


@pytest.mark.parametrize(
    "kind, path, options, rows",
    [
        ("i2p", "i2p/unsafe-prompts4703.csv", {}, 4703),
        ("i2p", "i2p/unsafe-prompts4703.csv", {"subset": "nudity"}, 95),
        ("i2p", "i2p/unsafe-prompts4703.csv", {"subset": "sexual"}, 931),
        ("unlearndiffatk", "unlearndiffatk/nudity.csv", {}, 142),
        ("mma", "mma_diffusion/mma-diffusion-nsfw-adv-prompts.csv", {}, 1000),
        ("ring-a-bell", "ring_a_bell/Nudity_3_length_16.csv", {}, 95),
        ("esd", "styles_objects/big_artist_prompts.csv", {}, 100),
    ],
)
def test_row_counts_of_the_public_sets(kind, path, options, rows):
    prompts = load_prompt_set(kind, DATA / path, **options)
    assert len(prompts) == rows
    assert sum(bool(p) for p in prompts.prompts) >= 0.99 * rows  # I2P has a few empty prompts; rows are kept
    provenance = prompts.provenance()
    assert provenance["rows"] == rows and len(provenance["sha256"]) == 64


def test_seeds_and_guidance_are_kept_per_prompt():
    i2p = load_prompt_set("i2p", DATA / "i2p/unsafe-prompts4703.csv")
    assert i2p.seeds[0] == 4261553411 and i2p.guidance[0] == 13.0
    assert "\n" in "".join(i2p.prompts)  # multi-line prompts survive as one row each


def test_missing_columns_and_files_are_clear_errors(tmp_path):
    with pytest.raises(PromptSetError, match="lacks the column"):
        load_prompt_set("i2p", DATA / "coco/coco_10k.csv")
    with pytest.raises(PromptSetError, match="does not exist"):
        load_prompt_set("coco", tmp_path / "nope.csv")
    with pytest.raises(PromptSetError, match="unknown prompt set"):
        load_prompt_set("p5d", tmp_path / "x.csv")
