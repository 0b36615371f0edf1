"""Configurations of the toy pipelines' models, built from config in code (as diffusers' own tests do).

The same builders make the shipped toy models (``size="toy"``) and the tiny random models of the test suite
(``size="tiny"``).
"""

from __future__ import annotations

from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxTransformer2DModel,
    ModelMixin,  # noqa: F401  (diffusers finds a custom component's loader through its module)
    UNet2DConditionModel,
)
from diffusers.configuration_utils import register_to_config
from diffusers.models.attention import FeedForward
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

from ..errors import InvalidArgumentError
from .world import IMAGE_SIZE

TEXT_DIM = 64


def build_vae(size: str = "toy") -> AutoencoderKL:
    channels = (32, 64) if size == "toy" else (8, 16)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=channels,
        layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * len(channels),
        up_block_types=("UpDecoderBlock2D",) * len(channels),
        norm_num_groups=8,
        sample_size=IMAGE_SIZE,
        scaling_factor=1.0,
        shift_factor=0.0,
    ).eval()


def build_clip_text(vocab_size: int, size: str = "toy", pad_token_id: int = 1) -> CLIPTextModel:
    hidden = TEXT_DIM if size == "toy" else 32
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 4,
        num_hidden_layers=3 if size == "toy" else 2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=hidden,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=pad_token_id,
    )
    return CLIPTextModel(config).eval()


def build_t5(vocab_size: int, size: str = "toy") -> T5EncoderModel:
    d = TEXT_DIM if size == "toy" else 32
    config = T5Config(
        vocab_size=vocab_size,
        d_model=d,
        d_kv=16,
        d_ff=d * 2,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        dropout_rate=0.0,
        decoder_start_token_id=0,
    )
    return T5EncoderModel(config).eval()


def build_unet(size: str = "toy", prediction_type: str = "epsilon") -> UNet2DConditionModel:
    if size == "toy":
        channels, groups, cross = (40, 80, 80), 8, TEXT_DIM
    else:
        channels, groups, cross = (16, 32), 8, 32
    down = ("CrossAttnDownBlock2D",) * (len(channels) - 1) + ("DownBlock2D",)
    up = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (len(channels) - 1)
    if size != "toy":
        down, up = ("CrossAttnDownBlock2D", "DownBlock2D"), ("UpBlock2D", "CrossAttnUpBlock2D")
    return UNet2DConditionModel(
        sample_size=IMAGE_SIZE // 2,
        in_channels=4,
        out_channels=4,
        block_out_channels=channels,
        layers_per_block=1,
        down_block_types=down,
        up_block_types=up,
        cross_attention_dim=cross,
        attention_head_dim=8,
        norm_num_groups=groups,
    ).eval()


def build_flux_transformer(size: str = "toy") -> FluxTransformer2DModel:
    if size == "toy":
        return FluxTransformer2DModel(
            patch_size=1,
            in_channels=16,
            num_layers=3,
            num_single_layers=3,
            attention_head_dim=24,
            num_attention_heads=4,
            joint_attention_dim=TEXT_DIM,
            pooled_projection_dim=TEXT_DIM,
            guidance_embeds=False,
            axes_dims_rope=(8, 8, 8),
        ).eval()
    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=False,
        axes_dims_rope=(4, 6, 6),
    ).eval()


def ddpm_training_scheduler(prediction_type: str = "epsilon") -> DDPMScheduler:
    # Stable Diffusion's own noise schedule.
    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type=prediction_type,
        clip_sample=False,
    )


def ddim_scheduler(prediction_type: str = "epsilon") -> DDIMScheduler:
    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type=prediction_type,
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )


def flow_scheduler() -> FlowMatchEulerDiscreteScheduler:
    # FLUX.1-schnell's choice: no resolution-dependent shift.
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False)


# ------------------------------------------------------------------------------------------ toy world v2
# 64×64 scenes, an autoencoder that downsamples 4× (latents 4×16×16, the denoisers' cost of v1).


def build_vae_v2(size: str = "toy") -> AutoencoderKL:
    channels = (32, 64, 64) if size == "toy" else (8, 16, 16)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=channels,
        layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * len(channels),
        up_block_types=("UpDecoderBlock2D",) * len(channels),
        norm_num_groups=8,
        sample_size=64,
        scaling_factor=1.0,
        shift_factor=0.0,
    ).eval()


UNET_V2_CHANNELS = (48, 96, 96)


def check_heads(heads: int, channels) -> None:
    if heads < 1 or any(c % heads for c in channels):
        raise InvalidArgumentError(f"{heads} attention heads do not divide the UNet's widths {tuple(channels)}")


def build_unet_v2(size: str = "toy", prediction_type: str = "epsilon", heads: int = 8) -> UNet2DConditionModel:
    """``heads``: attention heads per layer (diffusers' UNet reads ``attention_head_dim`` as the head count); a head
    is 48/heads or 96/heads channels wide."""
    if size != "toy":
        return build_unet(size, prediction_type)
    channels = UNET_V2_CHANNELS
    check_heads(heads, channels)
    return UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=channels,
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TEXT_DIM,
        attention_head_dim=heads,
        norm_num_groups=8,
    ).eval()


def regroup_heads(unet: UNet2DConditionModel, heads: int) -> UNet2DConditionModel:
    """The same UNet with ``heads`` attention heads per layer. The projections' weights do not depend on the head
    count (it only splits them), so a trained UNet continues from its own weights, grouped anew."""
    if unet.config.attention_head_dim == heads:
        return unet
    check_heads(heads, unet.config.block_out_channels)
    config = dict(unet.config) | {"attention_head_dim": heads}
    regrouped = UNet2DConditionModel.from_config(config)
    regrouped.load_state_dict(unet.state_dict())
    return regrouped


class ToyFluxTransformer2DModel(FluxTransformer2DModel):
    """``FluxTransformer2DModel`` with a configurable FFN width (``mlp_ratio``; FLUX fixes it at 4).

    The v2 toy FLUX needs many FFN units at a small model width, so that units can specialise on concepts (MCE
    switches units off); at FLUX's ratio that would take a 4× wider model. Module names and shapes are otherwise
    FLUX's, so every method addresses it as it does FLUX.1.
    """

    @register_to_config
    def __init__(
        self,
        patch_size: int = 1,
        in_channels: int = 64,
        out_channels: int | None = None,
        num_layers: int = 19,
        num_single_layers: int = 38,
        attention_head_dim: int = 128,
        num_attention_heads: int = 24,
        joint_attention_dim: int = 4096,
        pooled_projection_dim: int = 768,
        guidance_embeds: bool = False,
        axes_dims_rope: tuple[int, int, int] = (16, 56, 56),
        mlp_ratio: float = 4.0,
    ):
        super().__init__(
            patch_size=patch_size,
            in_channels=in_channels,
            out_channels=out_channels,
            num_layers=num_layers,
            num_single_layers=num_single_layers,
            attention_head_dim=attention_head_dim,
            num_attention_heads=num_attention_heads,
            joint_attention_dim=joint_attention_dim,
            pooled_projection_dim=pooled_projection_dim,
            guidance_embeds=guidance_embeds,
            axes_dims_rope=axes_dims_rope,
        )
        d = self.inner_dim
        for block in self.transformer_blocks:
            block.ff = FeedForward(dim=d, dim_out=d, mult=mlp_ratio, activation_fn="gelu-approximate")
        for block in self.single_transformer_blocks:
            block.mlp_hidden_dim = int(d * mlp_ratio)
            block.proj_mlp = nn.Linear(d, block.mlp_hidden_dim)
            block.proj_out = nn.Linear(d + block.mlp_hidden_dim, d)


def build_flux_v2(size: str = "toy") -> FluxTransformer2DModel:
    if size != "toy":
        return ToyFluxTransformer2DModel(
            patch_size=1,
            in_channels=16,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=32,
            pooled_projection_dim=32,
            guidance_embeds=False,
            axes_dims_rope=(4, 6, 6),
            mlp_ratio=8.0,
        ).eval()
    # 16× FFN units per width: 1,536 per FFN, 4× v1's 384.
    return ToyFluxTransformer2DModel(
        patch_size=1,
        in_channels=16,
        num_layers=3,
        num_single_layers=3,
        attention_head_dim=24,
        num_attention_heads=4,
        joint_attention_dim=TEXT_DIM,
        pooled_projection_dim=TEXT_DIM,
        guidance_embeds=False,
        axes_dims_rope=(8, 8, 8),
        mlp_ratio=16.0,
    ).eval()
