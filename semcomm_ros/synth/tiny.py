"""Tiny random models of the synthesizer's architecture, for tests and benchmarks on CPU.

Same blocks as the real model (SD-1.5-like UNet, SD-layout VAE, ControlNet, Eq. 7 processors,
MotionAdapter, Semantic Refiner), scaled down. The weights depend only on the seed, so tests can
compare outputs bit for bit across runs.
"""

from __future__ import annotations

import diffusers
import torch
from torch import nn

from .config import SynthConfig
from .model import SynthModel
from .refiner import SemanticRefiner


def tiny_unet(resolution: int = 64, seed: int = 0, channels: int = 4):
    """A small random UNet2DConditionModel with self-attention at every level that has attention.

    Same block structure as SD 1.5 (down blocks with cross-attention transformers, a cross-attention
    mid block), scaled down for tests on CPU. channels: its latent's (4 x latent_patch^2).
    """
    torch.manual_seed(seed)
    return diffusers.UNet2DConditionModel(
        sample_size=resolution // 8, in_channels=channels, out_channels=channels,
        block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8,
    )


def tiny_vae(seed: int = 0, vae_class: str = "AutoencoderTiny", factor: int = 8):
    """A small random VAE with 1/``factor`` latents and 4 latent channels (SD layout: 1/8)."""
    torch.manual_seed(seed)
    levels = factor.bit_length()  # each level after the first halves the resolution
    if vae_class == "AutoencoderTiny":
        ch = (16,) * levels
        return diffusers.AutoencoderTiny(
            encoder_block_out_channels=ch, decoder_block_out_channels=ch,
            num_encoder_blocks=(1,) * levels, num_decoder_blocks=(1,) * levels, latent_channels=4,
            scaling_factor=1.0, shift_factor=0.0)
    return diffusers.AutoencoderKL(
        block_out_channels=(8, 16, 16, 16)[:levels], layers_per_block=1, norm_num_groups=8, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * levels, up_block_types=("UpDecoderBlock2D",) * levels)


def tiny_model(resolution: int = 64, seed: int = 0, num_classes: int = 8, **config) -> SynthModel:
    """Same architecture, tiny random weights; every adapter and the refiner act (non-zero).

    ``config``: further ``SynthConfig`` fields (lambdas, window, vae_class, ...); latent_patch=p
    pairs a 1/(8/p) VAE with the UNet's 1/8 grid (v6's layout at p=2).
    """
    patch = int(config.get("latent_patch", 1))
    config.setdefault("vae_factor", 8 // patch)
    cfg = SynthConfig(height=resolution, width=resolution, num_classes=num_classes, **config)
    unet = tiny_unet(resolution, seed, channels=4 * patch * patch)
    vae = tiny_vae(seed + 1, cfg.vae_class, cfg.vae_factor)
    torch.manual_seed(seed + 2)
    model = SynthModel.from_components(unet, vae, cfg, adapter_init="random", motion_heads=2,
                                       controlnet_embedding_channels=(8, 16, 16, 32))
    # ControlNet zero convolutions and AnimateDiff proj_out would make psi/phi no-ops at init;
    # random values make every adapter visibly act in tests.
    torch.manual_seed(seed + 3)
    zero_init = [model.controlnet.controlnet_cond_embedding.conv_out, model.controlnet.controlnet_mid_block,
                 *model.controlnet.controlnet_down_blocks]
    zero_init += [m.proj_out for m in model.temporal.motion.modules() if hasattr(m, "proj_out")]
    for m in zero_init:
        m.reset_parameters()
    # PyTorch's default conv init shrinks the signal layer by layer, so a random conditioning
    # embedding would ignore the label map; variance-preserving init keeps it visible.
    for m in model.controlnet.controlnet_cond_embedding.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    model.refiner = SemanticRefiner(num_classes=num_classes, channels=(8, 8, 8))
    model.refiner.out.reset_parameters()  # zero-initialised, rho would be a no-op
    model.config = model.config.replace(parts={**model.config.parts, "refiner": "refiner"})
    return model
