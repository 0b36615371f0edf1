"""The configuration of the negative-prompt baseline."""

from __future__ import annotations

from dataclasses import dataclass

from ...config import CheckedConfig


@dataclass
class NegPromptConfig(CheckedConfig):
    # How several targets become one negative prompt ("star, striped").
    separator: str = ", "
