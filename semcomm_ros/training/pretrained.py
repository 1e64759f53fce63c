"""The paper's starting point from local public checkpoints (V-D): nothing is ever downloaded.

- backbone: a diffusers Stable Diffusion folder (``model_index.json``, ``unet/``, ``vae/``,
  ``scheduler/``, ``text_encoder/``, ``tokenizer/``) or one ``.safetensors`` / ``.ckpt`` file through
  diffusers' single-file loading. UNet and AutoencoderKL are frozen in the SynthModel; the empty
  prompt is encoded once here and stored with the model (``null_embedding.safetensors``), so the text
  encoder is not needed at run time.
- teacher phi: an AnimateDiff ``MotionAdapter`` folder, or an original AnimateDiff motion-module
  file (``mm_sd_v15_v2.ckpt`` style keys, converted with diffusers' own key mapping). It is a
  diffusers MotionAdapter, which is exactly what our Temporal Adapter holds.
- psi: a diffusers ControlNet folder. One made for an RGB condition image (e.g. a segmentation
  ControlNet that reads a colour-coded map) gets the colour-palette label encoding folded into its
  first convolution, see ``fold_palette``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from semcomm_ros.scenes.classes import PALETTE
from semcomm_ros.synth.backbone import SINGLE_FILE_SUFFIXES, _require_dir, load_sd_backbone
from semcomm_ros.synth.temporal_adapter import _sites

#: an SD-sized backbone gets the public checkpoints' shapes: ControlNet's hint encoder and
#: AnimateDiff's 8 motion heads, so that released weights load into them
SD_CONTROL_EMBEDDING = (16, 32, 96, 256)
SD_MOTION_HEADS = 8


def _exists(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{what} {path} does not exist")
    return path


def load_backbone(source: str | Path, config_dir: str | Path = ""):
    """(unet, vae, training scheduler, null embedding) from a local SD folder or single file
    (``synth.backbone.load_sd_backbone``, which ``SynthModel.from_sd_checkpoint`` uses too)."""
    return load_sd_backbone(source, config_dir=config_dir or None)


# -- the teacher phi: AnimateDiff's MotionAdapter ------------------------------------------------
def load_motion_adapter(source: str | Path, unet):
    """A diffusers MotionAdapter from a folder, or from an original AnimateDiff motion-module file."""
    from diffusers import MotionAdapter

    path = _exists(Path(source), "motion adapter")
    if path.is_dir():
        motion = MotionAdapter.from_pretrained(_require_dir(path, "motion adapter"), local_files_only=True)
    elif path.suffix in SINGLE_FILE_SUFFIXES:
        motion = _motion_from_file(path, unet)
    else:
        raise ValueError(f"motion adapter {path} must be a diffusers MotionAdapter folder or a "
                         f"{' / '.join(SINGLE_FILE_SUFFIXES)} AnimateDiff motion-module file")
    try:
        _sites(unet, motion)
    except ValueError as exc:
        raise ValueError(f"motion adapter {path} does not fit the backbone: {exc}") from exc
    return motion


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    sd = torch.load(path, map_location="cpu", weights_only=True)
    return sd.get("state_dict", sd)


def _motion_from_file(path: Path, unet):
    """Original AnimateDiff keys -> diffusers (diffusers' own mapping); the config read off the weights."""
    from diffusers import MotionAdapter
    from diffusers.loaders.single_file_utils import convert_animatediff_checkpoint_to_diffusers

    raw = _read_state_dict(path)
    pe = next((v for k, v in raw.items() if "pos_encoder.pe" in k), None)
    sd = convert_animatediff_checkpoint_to_diffusers(raw)
    if not any(".motion_modules." in k for k in sd):
        raise ValueError(f"{path} holds no AnimateDiff motion modules (no '*.motion_modules.*' keys)")
    blocks = {int(k.split(".")[3]) for k in sd if k.startswith("down_blocks.0.motion_modules.0.transformer_blocks.")}
    ucfg = unet.config
    layers = ucfg.layers_per_block if isinstance(ucfg.layers_per_block, int) else tuple(ucfg.layers_per_block)
    motion = MotionAdapter(
        block_out_channels=tuple(ucfg.block_out_channels), motion_layers_per_block=layers,
        motion_transformer_layers_per_block=max(blocks) + 1 if blocks else 1,
        motion_mid_block_layers_per_block=1, motion_transformer_layers_per_mid_block=1,
        motion_num_attention_heads=SD_MOTION_HEADS, motion_norm_num_groups=ucfg.norm_num_groups,
        motion_max_seq_length=int(pe.shape[1]) if pe is not None else 32,
        use_motion_mid_block=any(k.startswith("mid_block.") for k in sd))
    missing, unexpected = motion.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.endswith("pos_embed.pe")]  # sinusoidal, rebuilt from the config
    if missing or unexpected:
        raise ValueError(f"{path} does not fit a MotionAdapter for this backbone: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}")
    return motion


def load_phi_weights(model, motion, source) -> None:
    """Copy a MotionAdapter's weights into the model's Temporal Adapter, or say why they do not fit."""
    try:
        model.temporal.motion.load_state_dict(motion.state_dict(), strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{source} does not fit the model's Temporal Adapter (assemble the model with the same "
                         f"--motion-adapter from the first stage on): {exc}") from exc


# -- psi from a ControlNet -----------------------------------------------------------------------
def load_controlnet(source: str | Path, unet, num_classes: int, data=None):
    """A local diffusers ControlNet as the initial psi: one-hot input, or an RGB one with the palette folded in."""
    from diffusers import ControlNetModel

    path = _require_dir(_exists(Path(source), "ControlNet"), "controlnet")
    cn = ControlNetModel.from_pretrained(path, local_files_only=True)
    for key in ("block_out_channels", "cross_attention_dim", "layers_per_block"):
        a, b = cn.config[key], unet.config[key]
        if (list(a) if isinstance(a, (list, tuple)) else a) != (list(b) if isinstance(b, (list, tuple)) else b):
            raise ValueError(f"ControlNet {path} does not fit the backbone: {key} {a} vs the UNet's {b}")
    cc = cn.config.conditioning_channels
    if cc == num_classes:
        return cn
    if cc == 3:
        return fold_palette(cn, label_palette(num_classes, data))
    raise ValueError(f"ControlNet {path} takes {cc} condition channels: expected {num_classes} (one-hot, one per "
                     "class) or 3 (an RGB colour-coded label map)")


def label_palette(num_classes: int, data=None) -> torch.Tensor:
    """[num_classes, 3] colours in 0..1: the classes YAML's ``palette:``, else the tabletop palette."""
    colours = None
    if data is not None and data.classes:
        import yaml

        doc = yaml.safe_load(Path(data.classes).read_text())
        colours = doc.get("palette") if isinstance(doc, dict) else None
    if colours is None:
        colours = PALETTE
    if len(colours) < num_classes:
        raise ValueError(f"an RGB ControlNet needs a colour per class: {num_classes} classes, {len(colours)} "
                         "colours (add `palette: [[r, g, b], ...]` to the classes YAML)")
    return torch.tensor(colours[:num_classes], dtype=torch.float32) / 255.0


def fold_palette(controlnet, palette: torch.Tensor):
    """Turn an RGB-input ControlNet into a one-hot one that computes exactly the same thing.

    The first conditioning convolution is linear in its input and the palette image is
    sum_k onehot_k * colour_k, so conv_W(palette image) = conv_W'(one-hot) with
    W'[:, k] = sum_c W[:, c] colour_k[c] (zero padding maps to zero on both sides).
    """
    emb = controlnet.controlnet_cond_embedding
    old = emb.conv_in
    new = nn.Conv2d(palette.shape[0], old.out_channels, old.kernel_size, old.stride, old.padding,
                    bias=old.bias is not None)
    with torch.no_grad():
        new.weight.copy_(torch.einsum("ochw,kc->okhw", old.weight.float(), palette).to(old.weight.dtype))
        if old.bias is not None:
            new.bias.copy_(old.bias)
    emb.conv_in = new
    controlnet.register_to_config(conditioning_channels=int(palette.shape[0]))
    return controlnet
