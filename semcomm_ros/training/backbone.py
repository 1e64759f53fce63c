"""The compact backbone of the tabletop preset, trained here because no weights can be downloaded.

- VAE: a diffusers ``AutoencoderTiny`` (TAESD architecture: plain convs, no attention), chosen for
  CPU speed -- it decodes a 128x128 frame in a few milliseconds where an AutoencoderKL of similar
  quality costs several times more. Latents are 1/8 of the frame (16x16 for 128x128), as SD's.
- Denoiser epsilon_theta: a diffusers ``UNet2DConditionModel`` with self-attention blocks (where the
  Restoration and Temporal Adapters attach) and a zero null text embedding (one token), trained with
  the diffusion loss (Eq. 3) on VAE latents of tabletop frames.

Stages ``vae`` and ``backbone`` of ``semcomm train``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..synth import backbone as sbb
from .config import BackboneConfig
from .data import ClipSet, flip_array, to_tensor_images
from .losses import batch_generator, image_gradient_l1, object_weights, weighted_mse


def build_vae(cfg: BackboneConfig):
    from diffusers import AutoencoderTiny

    if len(cfg.vae_encoder_blocks) != len(cfg.vae_decoder_blocks):
        raise ValueError("vae_encoder_blocks and vae_decoder_blocks must have the same number of levels")
    # AutoencoderTiny needs one width for all levels (its stride-2 convs map c -> c)
    ch = (cfg.vae_channels,) * len(cfg.vae_encoder_blocks)
    return AutoencoderTiny(
        in_channels=3, out_channels=3,
        encoder_block_out_channels=ch, decoder_block_out_channels=ch,
        num_encoder_blocks=tuple(cfg.vae_encoder_blocks), num_decoder_blocks=tuple(cfg.vae_decoder_blocks),
        latent_channels=cfg.latent_channels, upsampling_scaling_factor=2,
        scaling_factor=1.0, shift_factor=0.0,
    )


def unet_latent_size(cfg: BackboneConfig, resolution: int, vae_factor: int) -> int:
    """The UNet's latent grid for frames of ``resolution``: 1/(f * latent_patch)."""
    return resolution // (vae_factor * cfg.latent_patch)


def build_unet(cfg: BackboneConfig, latent_size: int):
    """latent_size: the UNet's grid (``unet_latent_size``); its channels are the VAE's x latent_patch^2."""
    from diffusers import UNet2DConditionModel

    n = len(cfg.unet_channels)
    channels = cfg.latent_channels * cfg.latent_patch ** 2
    return UNet2DConditionModel(
        sample_size=latent_size, in_channels=channels, out_channels=channels,
        block_out_channels=tuple(cfg.unet_channels),
        # full-resolution level without attention keeps the cost down; every lower level has
        # self-attention (attn1) for the Restoration and Temporal Adapters to extend
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",),
        layers_per_block=cfg.unet_layers_per_block, cross_attention_dim=cfg.cross_attention_dim,
        attention_head_dim=cfg.attention_head_dim, norm_num_groups=cfg.norm_num_groups,
    )


def build_scheduler(cfg: BackboneConfig):
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=cfg.num_train_timesteps, beta_start=cfg.beta_start,
                         beta_end=cfg.beta_end, beta_schedule=cfg.beta_schedule,
                         prediction_type=cfg.prediction_type, clip_sample=False)


def null_embedding(cfg: BackboneConfig, batch: int = 1) -> torch.Tensor:
    """The empty prompt of a model without text encoder: one all-zero token."""
    return torch.zeros(batch, 1, cfg.cross_attention_dim)


class VAEStage(nn.Module):
    """Autoencoder training: L1 + gradient L1 reconstruction with a small latent penalty.

    Decoding latents with a little added noise and penalising their energy plays the role of SD's
    KL term: it keeps the latent space smooth and bounded, which the diffusion model needs.
    """

    def __init__(self, cfg: BackboneConfig, vae=None, latent_noise: float = 0.05, latent_l2: float = 1e-3,
                 object_weight: float = 0.0):
        super().__init__()
        self.cfg = cfg
        self.vae = vae if vae is not None else build_vae(cfg)
        self.latent_noise, self.latent_l2 = latent_noise, latent_l2
        self.object_weight = float(object_weight)

    def trainable_parameters(self):
        return [p for p in self.vae.parameters()]

    def forward(self, batch, step: int = 0, phase: str = "main", generator: torch.Generator | None = None):
        generator = batch_generator(batch, generator)
        x = batch["x"] if "x" in batch else to_tensor_images(batch["frames"]).flatten(0, 1)
        x = x.to(next(self.parameters()).device)
        w = None
        if self.object_weight and "labels" in batch:
            lab = torch.as_tensor(np.asarray(batch["labels"])).reshape(-1, 1, *x.shape[-2:])
            w = 1.0 + self.object_weight * (lab > 0).to(x.device, x.dtype)
        c = self.cfg.vae_crop
        if c and c < x.shape[-1]:
            # one random crop per image; positions on a multiple of 8 keep the latent grid aligned
            g = generator
            ys = torch.randint(0, (x.shape[-2] - c) // 8 + 1, (x.shape[0],), generator=g) * 8
            xs = torch.randint(0, (x.shape[-1] - c) // 8 + 1, (x.shape[0],), generator=g) * 8
            pos = list(zip(ys.tolist(), xs.tolist()))
            x = torch.stack([im[:, y:y + c, x_:x_ + c] for im, (y, x_) in zip(x, pos)])
            if w is not None:
                w = torch.stack([m[:, y:y + c, x_:x_ + c] for m, (y, x_) in zip(w, pos)])
        z = self.vae.encode(x).latents
        noise = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
        rec = self.vae.decode(z + self.latent_noise * noise).sample
        # normalised by the mean weight: the loss scale (and the learning rate that suits it) stays
        # that of plain L1 whatever the share of object pixels in the batch
        rec_loss = F.l1_loss(rec, x) if w is None else (w * (rec - x).abs()).mean() / w.mean()
        return rec_loss + image_gradient_l1(rec, x) + self.latent_l2 * z.pow(2).mean()


class LatentCache:
    """Scaled VAE latents of every (clip, frame, flip) of a ClipSet, computed once."""

    def __init__(self, latents: torch.Tensor):
        self.latents = latents  # (N, F, 4, C, h, w)

    @classmethod
    @torch.no_grad()
    def build(cls, vae, clips: ClipSet, scaling_factor: float, batch: int = 64, progress: bool = True,
              patch: int = 1):
        """patch: the UNet's latent patch (``synth.backbone.to_patches``): latents in the UNet's layout."""
        from tqdm.auto import tqdm

        n, f = clips.num_clips, clips.frames_per_clip
        frames = clips.frames.reshape(n * f, *clips.frames.shape[2:])
        outs = []
        bar = tqdm(total=4 * len(frames), desc="encode latents", disable=not progress)
        for flip in range(4):
            lat = []
            for i in range(0, len(frames), batch):
                x = to_tensor_images(flip_array(frames[i:i + batch], flip, spatial_axes=(1, 2)))
                lat.append(sbb.to_patches(vae.encode(x).latents * scaling_factor, patch))
                bar.update(len(x))
            outs.append(torch.cat(lat))
        bar.close()
        lat = torch.stack(outs, 1)  # (N*F, 4, C, h, w)
        return cls(lat.reshape(n, f, 4, *lat.shape[2:]))

    def lookup(self, batch: dict, frames: int) -> torch.Tensor:
        """Latents of a BatchSampler batch: (B, K, C, h, w)."""
        idx_f = torch.as_tensor(np.asarray(batch["start"])[:, None] + np.arange(frames))
        ci = torch.as_tensor(np.asarray(batch["clip"]))[:, None]
        fl = torch.as_tensor(np.asarray(batch["flip"]))[:, None]
        return self.latents[ci, idx_f, fl]


@torch.no_grad()
def latent_scaling_factor(vae, clips: ClipSet, max_frames: int = 256) -> float:
    """1 / std of the latents, so that scaled latents have unit variance as SD's (0.18215) do."""
    frames = clips.frames.reshape(-1, *clips.frames.shape[2:])
    idx = np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).astype(int)
    z = torch.cat([vae.encode(to_tensor_images(frames[i:i + 1])).latents for i in idx])
    return float(1.0 / z.std().clamp_min(1e-6))


class BackboneStage(nn.Module):
    """epsilon_theta trained with Eq. 3 on cached latents: ||eps - eps_theta(x_t, t)||^2."""

    def __init__(self, cfg: BackboneConfig, latent_size: int, cache: LatentCache | None = None, unet=None,
                 object_weight: float = 0.0):
        super().__init__()
        self.cfg = cfg
        self.object_weight = float(object_weight)
        self.unet = unet if unet is not None else build_unet(cfg, latent_size)
        self.scheduler = build_scheduler(cfg)
        self.cache = cache
        self.register_buffer("null", null_embedding(cfg), persistent=False)

    def trainable_parameters(self):
        return list(self.unet.parameters())

    def forward(self, batch, step: int = 0, phase: str = "main", generator: torch.Generator | None = None):
        generator = batch_generator(batch, generator)
        x0 = batch["latents"] if "latents" in batch else self.cache.lookup(batch, 1).flatten(0, 1)
        dev = self.null.device
        x0 = x0.to(dev)
        b = x0.shape[0]
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (b,), generator=generator).to(dev)
        eps = torch.randn(x0.shape, generator=generator).to(dev)
        xt = sbb.add_noise(self.scheduler, x0, t, eps)
        pred = self.unet(xt, t, self.null.expand(b, -1, -1)).sample
        target = sbb.diffusion_target(self.scheduler, x0, eps, t)
        weight = None
        if self.object_weight and "labels" in batch:
            lab = torch.as_tensor(np.asarray(batch["labels"])).reshape(b, *np.asarray(batch["labels"]).shape[-2:])
            weight = object_weights(lab, tuple(x0.shape[-2:]), self.object_weight).to(dev)
        return weighted_mse(pred, target, weight)


def save_backbone(out: str | Path, vae, unet, scaling_factor: float, cfg: BackboneConfig) -> Path:
    """Diffusers layout: ``vae/``, ``unet/``, ``scheduler/`` + ``backbone.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if vae is not None:
        vae.register_to_config(scaling_factor=float(scaling_factor))
        vae.save_pretrained(out / "vae", safe_serialization=True)
    if unet is not None:
        unet.save_pretrained(out / "unet", safe_serialization=True)
    build_scheduler(cfg).save_pretrained(out / "scheduler")
    meta = {"scaling_factor": float(scaling_factor), "null_embedding": "zeros",
            "cross_attention_dim": cfg.cross_attention_dim, "config": {
                k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.__dict__.items()}}
    (out / "backbone.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out
