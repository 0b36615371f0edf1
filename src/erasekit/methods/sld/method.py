"""SLD — Safe Latent Diffusion (Schramowski et al., CVPR 2023): safety guidance at inference, no weights change.

Every step also predicts the noise for a safety concept and subtracts, element-wise where the prompt's
prediction is close to the safety concept's, a scaled and momentum-accumulated guidance toward it
(``erasekit.methods.sld.guidance``). Here the safety concept is the erased concept's text. The Edit is an
inference control holding the settings; applied, it replaces the pipeline's call (``PipelineState.call_override``)
by a ``SafeLatentSampler``, which runs the pipeline's own ``__call__`` with two hooks on the UNet, so weight and
mask edits and a negative prompt compose with it. Stable Diffusion only: FLUX.1 samples without classifier-free
guidance.
"""

from __future__ import annotations

from ...edits import Edit
from ...errors import InvalidEditError, UnsupportedModelError
from ...pipeline_state import editing_state, existing_state
from ..base import EraseRequest, Method, register
from .config import SLDConfig
from .sampler import SafeLatentSampler, check_pipeline


@register
class SLD(Method):
    name = "sld"
    summary = (
        "Safe Latent Diffusion: guidance away from the concept as safety concept, at inference "
        "(presets weak/medium/strong/max; baseline)"
    )
    kind = "inference_control"
    families = ("sd",)
    Config = SLDConfig

    def check_family(self, family: str) -> None:
        if family == "flux":
            raise UnsupportedModelError(
                "method 'sld' supports sd models, not flux: safe latent diffusion modifies classifier-free "
                "guidance, and FLUX.1 samples without it (schnell is distilled to a few unguided steps, dev "
                "embeds its guidance); use negprompt (true CFG) or mce on FLUX"
            )
        super().check_family(family)

    def erase(self, backbone, request: EraseRequest, config: SLDConfig | None = None) -> Edit:
        self.check_family(backbone.family)
        config = config or self.make_config()
        check_pipeline(backbone.pipeline)
        concept = config.separator.join(request.targets)
        return self.new_edit(
            backbone, request.targets, config, data={"safety_concept": concept, "sld": config.values()}
        )

    def apply_edit(self, edit: Edit, pipeline) -> None:
        check_pipeline(pipeline)
        if sld_sampler(pipeline) is not None:
            raise InvalidEditError(
                "an SLD edit is already applied to this pipeline; erase several concepts in one SLD edit "
                "(--concept a --concept b) instead of stacking two"
            )
        state = existing_state(pipeline)
        if state is not None:
            state.check_sampler_free("SLD, which guides the pipeline's own sampler,")
        config = SLDConfig(**edit.config)
        concept = edit.data.get("safety_concept") or ", ".join(edit.concepts)
        sampler = SafeLatentSampler(pipeline, concept, config.values())
        with editing_state(pipeline) as state:
            state.set_call_override(sampler)
            state.install(edit, sampler)

    def remove_edit(self, edit: Edit, pipeline) -> None:
        with editing_state(pipeline) as state:
            sampler = state.uninstall(edit)
            if sampler is not None and state.call_override is sampler:
                state.set_call_override(None)


def sld_sampler(pipeline) -> SafeLatentSampler | None:
    """The sampler an applied SLD edit installed on ``pipeline`` (call it like the pipeline), if any."""
    state = existing_state(pipeline)
    samplers = state.things(SafeLatentSampler) if state else []
    return samplers[-1] if samplers else None
