"""One model builder: the ``SynthModel`` that every stage trains and that benchmarks and tests use.

``build_model`` puts a backbone (UNet + VAE + noise schedule + null embedding) and the three
adapters together for a preset; ``adapter_shapes`` is the one rule for the adapters' widths.
Where the backbone comes from is the only difference between the callers:

- ``assemble_model``: the run directory's trained ``vae/`` + ``unet/`` (stages vae, backbone), or a
  local Stable Diffusion folder / single file (``preset.pretrained.backbone``, the paper's setup);
- ``random_model``: random weights of the preset's architecture (benchmarks, tests).
"""

from __future__ import annotations

from pathlib import Path

import torch

from semcomm_ros.synth import SynthConfig, SynthModel
from semcomm_ros.synth import backbone as sbb
from semcomm_ros.synth.adapters import adapter
from semcomm_ros.synth.temporal_adapter import TemporalAdapter

from .backbone import build_scheduler, build_unet, build_vae, unet_latent_size
from .classes import class_names
from .config import Preset
from .pretrained import SD_CONTROL_EMBEDDING, SD_MOTION_HEADS, load_backbone, load_controlnet, load_motion_adapter

#: ControlNet hint encoder widths of the compact backbones (diffusers' default 16/32/96/256 costs
#: as much as the backbone at 128x128 on a CPU)
CONTROL_EMBEDDING = (16, 32, 32, 64)
MODEL = "model"
TEACHER = "teacher_temporal"


def _hint_levels(widths: tuple[int, ...], downsampling: int) -> tuple[int, ...]:
    """``widths`` (the 8x hint encoder's four) re-levelled for ``downsampling``: the hint encoder
    halves the label map at each level after the first and must land on the UNet's own grid."""
    if downsampling < 1 or downsampling & (downsampling - 1):
        raise ValueError(f"the frame-to-UNet downsampling must be a power of 2, got {downsampling}")
    levels = downsampling.bit_length()  # log2 + 1
    head = tuple(widths[:-1])
    body = head[:levels - 1] + head[-1:] * max(levels - 1 - len(head), 0)
    return body + (widths[-1],)


def adapter_shapes(unet, downsampling: int = 8) -> dict:
    """ControlNet hint-encoder widths and motion heads for a backbone UNet (from_components kwargs).

    downsampling: frame pixels per UNet cell (the VAE's factor f times the latent patch p)."""
    ch = tuple(unet.config.block_out_channels)
    if ch[0] >= 256:
        return {"controlnet_embedding_channels": _hint_levels(SD_CONTROL_EMBEDDING, downsampling),
                "motion_heads": SD_MOTION_HEADS}
    emb = CONTROL_EMBEDDING if ch[0] >= CONTROL_EMBEDDING[-1] // 2 else tuple(max(4, ch[0] // 2) for _ in range(4))
    return {"controlnet_embedding_channels": _hint_levels(emb, downsampling),
            "motion_heads": max(1, ch[0] // 16) if ch[0] % 16 == 0 else 1}


def num_classes(preset: Preset) -> int:
    return len(class_names(preset.data))


def build_model(preset: Preset, unet, vae, scheduler=None, null_embedding: torch.Tensor | None = None,
                window: int | None = None, controlnet="new", temporal="new"):
    """The synthesizer model of ``preset`` around a backbone; adapters "new" unless given."""
    res = preset.data.resolution
    extra = {"window": window} if window else {}
    if null_embedding is not None:
        extra["null_tokens"] = int(null_embedding.shape[1])
    cfg = SynthConfig(height=res, width=res, num_classes=num_classes(preset), lowres_factor=preset.data.lowres_factor,
                      vae_class=type(vae).__name__, vae_factor=sbb.vae_factor(vae),
                      latent_patch=preset.backbone.latent_patch, noise=preset.backbone.noise,
                      **{**preset.operating_point, **extra})
    return SynthModel.from_components(unet, vae, cfg, scheduler=scheduler or build_scheduler(preset.backbone),
                                      null_embedding=null_embedding, controlnet=controlnet, temporal=temporal,
                                      **adapter_shapes(unet, cfg.vae_factor * cfg.latent_patch))


def random_model(preset: Preset, seed: int = 0, window: int | None = None):
    """The preset's full architecture with random backbone weights (benchmarks, tests)."""
    torch.manual_seed(seed)
    bb, res = preset.backbone, preset.data.resolution
    vae = build_vae(bb)
    return build_model(preset, build_unet(bb, unet_latent_size(bb, res, sbb.vae_factor(vae))), vae,
                       window=window or preset.stage("dmd").window)


def _trained(root: Path, part: str, stage: str) -> Path:
    path = root / MODEL / part
    if not path.is_dir():
        raise FileNotFoundError(f"no trained {part} under {path}; run `semcomm train {stage}` first"
                                + (" (or pass --pretrained DIR, a Stable Diffusion folder)" if stage == "vae" or
                                   stage == "backbone" else ""))
    return path


def assemble_model(preset: Preset, root: Path):
    """The backbone (trained by the vae/backbone stages, or pretrained) + fresh adapters."""
    src = preset.pretrained
    if src.backbone:
        unet, vae, scheduler, null = load_backbone(src.backbone, src.backbone_config)
        controlnet = temporal = "new"
        if src.controlnet:
            controlnet = load_controlnet(src.controlnet, unet, num_classes(preset), preset.data)
        if src.motion_adapter:  # phi starts as AnimateDiff's motion module, the paper's teacher
            temporal = TemporalAdapter(load_motion_adapter(src.motion_adapter, unet))
        return build_model(preset, unet, vae, scheduler=scheduler, null_embedding=null, controlnet=controlnet,
                           temporal=temporal)
    if preset.stage("backbone").steps <= 0 and not (root / MODEL / "unet").is_dir():
        raise FileNotFoundError(f"preset {preset.name!r} starts from a pretrained backbone: pass --pretrained DIR "
                                "(a local diffusers Stable Diffusion folder, or a single .safetensors file)")
    unet = sbb.load_unet(_trained(root, "unet", "backbone"))
    vae = sbb.load_vae(_trained(root, "vae", "vae"))
    return build_model(preset, unet, vae)


def load_model(preset: Preset, root: Path):
    """The run's model directory, assembled on first use."""
    path = root / MODEL
    if not (path / "synthesizer.json").is_file():
        assemble_model(preset, root).save_pretrained(path)
        if preset.pretrained.backbone:  # the record a trained backbone's backbone.json gives
            import dataclasses
            import json

            (path / "backbone.json").write_text(json.dumps({"pretrained": dataclasses.asdict(preset.pretrained)},
                                                           indent=2) + "\n")
    return SynthModel.from_pretrained(path)


def save_part(model, symbol: str, root: Path) -> None:
    """Write the trained adapter (psi, omega or phi) into the model directory (other parts untouched)."""
    model.save_module(symbol, root / MODEL / model.config.parts[adapter(symbol).part])
