"""The negative-prompt baseline: guide away from the target instead of away from the empty prompt.

Classifier-free guidance computes ε(x, ∅) + s·(ε(x, c) − ε(x, ∅)). With the target concept's text in place of
∅, every step pushes the sample away from the target. No weights change; the Edit is an inference control
that sets the pipeline's negative prompt (in its ``erasekit.pipeline_state.PipelineState``). On FLUX it needs
true classifier-free guidance (guidance > 1).
"""

from __future__ import annotations

from ...edits import Edit
from ...pipeline_state import editing_state
from ..base import EraseRequest, Method, register
from .config import NegPromptConfig


@register
class NegativePrompt(Method):
    name = "negprompt"
    summary = "the target as the negative prompt of classifier-free guidance (inference-time baseline)"
    kind = "inference_control"
    families = ("sd", "flux")
    Config = NegPromptConfig

    def erase(self, backbone, request: EraseRequest, config: NegPromptConfig | None = None) -> Edit:
        config = config or NegPromptConfig()
        self.check_family(backbone.family)
        negative = config.separator.join(request.targets)
        return self.new_edit(
            backbone,
            request.targets,
            config,
            data={"negative_prompt": negative},
        )

    def apply_edit(self, edit: Edit, pipeline) -> None:
        # Several negative-prompt edits compose into one negative prompt naming every concept.
        with editing_state(pipeline) as state:
            state.negative_prompts.append(edit.data["negative_prompt"])
            state.set_call_kwargs(negative_prompt=", ".join(state.negative_prompts))

    def remove_edit(self, edit: Edit, pipeline) -> None:
        with editing_state(pipeline) as state:
            if edit.data["negative_prompt"] in state.negative_prompts:
                state.negative_prompts.remove(edit.data["negative_prompt"])
            state.set_call_kwargs(negative_prompt=", ".join(state.negative_prompts) or None)
