"""the negative-prompt baseline: its Config and the registered method."""

from .config import NegPromptConfig
from .method import NegativePrompt

__all__ = ["NegPromptConfig", "NegativePrompt"]
