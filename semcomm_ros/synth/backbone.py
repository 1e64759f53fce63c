"""Diffusion backbone epsilon_theta (paper IV-B1): a frozen diffusers UNet2DConditionModel + VAE.

The backbone has no text encoder. The empty prompt is a fixed null embedding of shape
[1, null_tokens, cross_attention_dim] (zeros unless a stored tensor is given), fed to every
cross-attention layer. Real checkpoints load from LOCAL diffusers-layout directories only.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise FileNotFoundError(f"missing {what} directory {path}")
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{what} directory {path} has no config.json (diffusers layout expected)")
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise FileNotFoundError(f"{what} directory {path} holds no weight file (*.safetensors / *.bin)")
    return path


def load_unet(path: str | Path):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(_require_dir(Path(path), "unet"), local_files_only=True)


def load_vae(path: str | Path, vae_class: str | None = None):
    """A VAE directory; ``vae_class`` None = the class its config.json names (diffusers' ``_class_name``)."""
    import json

    import diffusers

    path = _require_dir(Path(path), "vae")
    if vae_class is None:
        vae_class = json.loads((path / "config.json").read_text()).get("_class_name", "AutoencoderKL")
    cls = getattr(diffusers, vae_class, None)
    if cls is None:
        raise ValueError(f"{path / 'config.json'} names VAE class {vae_class!r}, which diffusers does not have")
    return cls.from_pretrained(path, local_files_only=True)


class _DropTinyVAEConfigNote(logging.Filter):
    """AutoencoderTiny registers a ``block_out_channels`` config entry its own __init__ does not
    take, so every load of a saved one warns that the key "will be ignored": noise on every run."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not ("block_out_channels" in msg and "AutoencoderTiny" in msg)


logging.getLogger("diffusers.configuration_utils").addFilter(_DropTinyVAEConfigNote())


def load_scheduler(path: str | Path):
    from diffusers import LCMScheduler

    path = Path(path)
    if not (path / "scheduler_config.json").is_file():
        raise FileNotFoundError(f"missing scheduler config {path / 'scheduler_config.json'}")
    return LCMScheduler.from_pretrained(path, local_files_only=True)


def lcm_scheduler(source=None):
    """The few-step sampler: diffusers' LCMScheduler on the backbone's training noise schedule.

    ``source`` may be any diffusers scheduler (e.g. the DDPMScheduler the backbone was trained
    with) or a config dict; its beta schedule is kept so that alphas_cumprod match Eq. 1.
    """
    from diffusers import LCMScheduler

    if source is None:
        return LCMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                            num_train_timesteps=1000, prediction_type="epsilon", clip_sample=False,
                            set_alpha_to_one=True)
    config = dict(source.config if hasattr(source, "config") else source)
    keep = {k: config[k] for k in ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule",
                                   "trained_betas", "prediction_type", "timestep_spacing",
                                   "steps_offset", "rescale_betas_zero_snr") if k in config}
    keep.setdefault("prediction_type", "epsilon")
    return LCMScheduler(clip_sample=False, set_alpha_to_one=True, **keep)


# -- the noise schedule (Eq. 1) and what the UNet is trained to predict ------------------------------
#: what the UNet may predict (diffusers' scheduler ``prediction_type``)
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def prediction_type(scheduler) -> str:
    ptype = scheduler.config.prediction_type
    if ptype not in PREDICTION_TYPES:
        raise ValueError(f"unsupported prediction_type {ptype!r}; expected one of {PREDICTION_TYPES}")
    return ptype


def alpha_bar(scheduler, t, like: torch.Tensor) -> torch.Tensor:
    """abar_t of ``scheduler`` at ``t`` (int or tensor over the leading dims of ``like``), broadcastable to it."""
    t = torch.as_tensor(t, device=like.device).long()
    a = scheduler.alphas_cumprod.to(like.device)[t].to(like.dtype)
    while a.ndim < like.ndim:
        a = a.unsqueeze(-1)
    return a


def add_noise(scheduler, x0: torch.Tensor, t, noise: torch.Tensor) -> torch.Tensor:
    """Eq. 1, q(x_t | x_0): sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise."""
    a = alpha_bar(scheduler, t, x0)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def diffusion_target(scheduler, x0: torch.Tensor, noise: torch.Tensor, t) -> torch.Tensor:
    """Eq. 3's regression target at x_t = add_noise(x0, t, noise): the noise ("epsilon", as SD 1.5),
    v = sqrt(abar) noise - sqrt(1 - abar) x0 ("v_prediction") or x0 ("sample")."""
    ptype = prediction_type(scheduler)
    if ptype == "epsilon":
        return noise
    if ptype == "sample":
        return x0
    a = alpha_bar(scheduler, t, x0)
    return a.sqrt() * noise - (1 - a).sqrt() * x0


def split_output(scheduler, x_t: torch.Tensor, out: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
    """The UNet output at x_t -> (x0, noise) estimates (Eq. 4 for "epsilon"), whatever it predicts."""
    ptype = prediction_type(scheduler)
    a = alpha_bar(scheduler, t, x_t)
    if ptype == "epsilon":
        return (x_t - (1 - a).sqrt() * out) / a.sqrt(), out
    if ptype == "v_prediction":
        return a.sqrt() * x_t - (1 - a).sqrt() * out, (1 - a).sqrt() * x_t + a.sqrt() * out
    return out, (x_t - a.sqrt() * out) / (1 - a).sqrt()


def sd15_unet_config(resolution: int = 512) -> dict:
    """UNet2DConditionModel arguments with Stable Diffusion 1.5's shapes (860 M parameters)."""
    return dict(
        sample_size=resolution // 8, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32,
    )


def vae_scaling(vae) -> tuple[float, float]:
    cfg = vae.config
    scale = float(getattr(cfg, "scaling_factor", 1.0) or 1.0)
    shift = getattr(cfg, "shift_factor", None)
    return scale, float(shift or 0.0)


def vae_factor(vae) -> int:
    """The VAE's downsampling factor f (8 for SD's and the shipped one; each level after the first
    halves the resolution, in AutoencoderKL and AutoencoderTiny alike)."""
    cfg = vae.config
    levels = getattr(cfg, "encoder_block_out_channels", None) or getattr(cfg, "block_out_channels", None)
    return 2 ** (len(levels) - 1) if levels else 8


def to_patches(latents: torch.Tensor, patch: int) -> torch.Tensor:
    """VAE latents [N, C, h, w] -> the UNet's [N, C*p*p, h/p, w/p] (space-to-depth, DiT's "patch
    size"): a finer latent at the UNet's cost, only conv_in/conv_out seeing the p*p more channels."""
    return latents if patch == 1 else F.pixel_unshuffle(latents, patch)


def from_patches(latents: torch.Tensor, patch: int) -> torch.Tensor:
    """``to_patches``' inverse."""
    return latents if patch == 1 else F.pixel_shuffle(latents, patch)


def encode_images(vae, images: torch.Tensor, sample: bool = False,
                  generator: torch.Generator | None = None, patch: int = 1) -> torch.Tensor:
    """x_0 = E(I): images [N,3,H,W] in [-1,1] -> scaled latents [N,C*p*p,H/(f*p),W/(f*p)] (f the
    VAE's factor, p the latent patch: ``to_patches``).

    AutoencoderKL returns the posterior mode unless ``sample`` (training may want samples).
    """
    scale, shift = vae_scaling(vae)
    out = vae.encode(images.to(dtype=vae.dtype))
    if hasattr(out, "latent_dist"):
        z = out.latent_dist.sample(generator) if sample else out.latent_dist.mode()
    else:
        z = out.latents
    return to_patches((z - shift) * scale, patch)


def decode_latents(vae, latents: torch.Tensor, patch: int = 1) -> torch.Tensor:
    """Scaled latents (``encode_images``' layout) -> images [N,3,H,W] in [-1,1] (not clamped)."""
    scale, shift = vae_scaling(vae)
    return vae.decode(from_patches(latents, patch).to(dtype=vae.dtype) / scale + shift).sample


def empty_prompt_embedding(path: str | Path) -> torch.Tensor:
    """The CLIP text encoder's embedding of "" for a local SD checkpoint, computed once."""
    path = Path(path)
    for sub in ("text_encoder", "tokenizer"):
        if not (path / sub).is_dir():
            raise FileNotFoundError(f"missing {path / sub}: pass null_embedding= instead")
    try:
        from transformers import CLIPTextModel, CLIPTokenizer
    except ImportError as exc:
        raise ImportError("computing the empty-prompt embedding needs the `transformers` package; install it "
                          "or pass null_embedding= (a [1, 77, 768] tensor)") from exc
    tok = CLIPTokenizer.from_pretrained(path / "tokenizer", local_files_only=True)
    enc = CLIPTextModel.from_pretrained(path / "text_encoder", local_files_only=True)
    return encode_empty_prompt(tok, enc)


SD_FOLDER_PARTS = ("unet", "vae", "scheduler", "text_encoder", "tokenizer")
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")


def load_sd_backbone(path: str | Path, null_embedding: torch.Tensor | None = None,
                     config_dir: str | Path | None = None):
    """(unet, AutoencoderKL, DDPM training scheduler, null embedding) of a LOCAL Stable Diffusion checkpoint.

    ``path``: a diffusers folder (``unet/``, ``vae/``, ``scheduler/``, and ``text_encoder/`` +
    ``tokenizer/`` unless ``null_embedding`` is given; a missing part is named) or one
    ``.safetensors`` / ``.ckpt`` file through diffusers' single-file loading, whose configs come from
    ``config_dir`` (a diffusers SD folder; its weights are not read). Never a hub.
    """
    import json

    from diffusers import DDPMScheduler

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"pretrained backbone {path} does not exist")
    if path.is_file():
        if path.suffix not in SINGLE_FILE_SUFFIXES:
            raise ValueError(f"pretrained backbone {path} must be a diffusers Stable Diffusion folder or a single "
                             f"{' / '.join(SINGLE_FILE_SUFFIXES)} checkpoint")
        unet, vae, scheduler, null = _load_sd_single_file(path, config_dir)
    else:
        for part in SD_FOLDER_PARTS[:3] + (() if null_embedding is not None else SD_FOLDER_PARTS[3:]):
            if not (path / part).is_dir():
                raise FileNotFoundError(
                    f"{path} is not a complete diffusers Stable Diffusion folder: missing {path / part} (expected "
                    f"{', '.join(p + '/' for p in SD_FOLDER_PARTS)} and model_index.json, "
                    "as in stable-diffusion-v1-5)")
        unet = load_unet(path / "unet")
        vae = load_vae(path / "vae")
        sched_file = path / "scheduler" / "scheduler_config.json"
        if not sched_file.is_file():
            raise FileNotFoundError(f"missing scheduler config {sched_file}")
        scheduler = DDPMScheduler.from_config(json.loads(sched_file.read_text()))
        null = empty_prompt_embedding(path) if null_embedding is None else None
    if type(vae).__name__ != "AutoencoderKL":
        raise ValueError(f"{path}: the backbone VAE must be an AutoencoderKL, got {type(vae).__name__}")
    return unet, vae, scheduler, null_embedding if null_embedding is not None else null


def _load_sd_single_file(path: Path, config_dir):
    from diffusers import DDPMScheduler, StableDiffusionPipeline

    kwargs = {"local_files_only": True, "safety_checker": None, "requires_safety_checker": False}
    if config_dir is not None:
        if not Path(config_dir).is_dir():
            raise FileNotFoundError(f"single-file config folder {config_dir} does not exist")
        kwargs["config"] = str(config_dir)
    try:
        pipe = StableDiffusionPipeline.from_single_file(str(path), **kwargs)
    except Exception as exc:  # diffusers raises several types for a config it cannot find offline
        raise FileNotFoundError(
            f"could not load the single-file checkpoint {path} offline ({type(exc).__name__}: {exc}); pass "
            "--pretrained-config DIR, a diffusers Stable Diffusion folder whose model_index.json, */config.json "
            "and tokenizer/ describe it (the weights there are not read)") from exc
    null = encode_empty_prompt(pipe.tokenizer, pipe.text_encoder)
    return pipe.unet, pipe.vae, DDPMScheduler.from_config(pipe.scheduler.config), null


def encode_empty_prompt(tokenizer, text_encoder) -> torch.Tensor:
    """[1, tokens, dim]: the text encoder's last hidden state for "" padded to the tokenizer's length."""
    ids = tokenizer([""], padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
    with torch.no_grad():
        return text_encoder.eval()(ids.to(text_encoder.device))[0].float().cpu()


def zero_null_embedding(tokens: int, dim: int) -> torch.Tensor:
    return torch.zeros(1, tokens, dim)


class OneTokenCrossAttnProcessor:
    """Cross-attention to a one-token condition (a null embedding of ``null_tokens`` = 1, the
    tabletop models'): the softmax over one key is 1 whatever the query, so the output is
    to_out(to_v(c)) at every position, exactly. Queries, keys and scores are not computed (in the
    graph runtime they were ~90 operators of a denoising call). Inference only: with gradients on
    (training) and for any other call -- several tokens, a mask, 4-D input -- diffusers' own
    processor runs, so training sees the same parameters and gradients as before."""

    def __init__(self):
        from diffusers.models.attention_processor import AttnProcessor2_0

        self.general = AttnProcessor2_0()

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        if (torch.is_grad_enabled() or encoder_hidden_states is None or encoder_hidden_states.shape[1] != 1
                or attention_mask is not None or hidden_states.ndim != 3 or attn.spatial_norm is not None
                or attn.group_norm is not None or attn.residual_connection):
            return self.general(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        if attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        out = attn.to_out[1](attn.to_out[0](attn.to_v(encoder_hidden_states))) / attn.rescale_output_factor
        return out.expand(hidden_states.shape[0], hidden_states.shape[1], -1)


def use_one_token_cross_attention(*models) -> None:
    """Install ``OneTokenCrossAttnProcessor`` on every cross-attention of ``models`` (None skipped)."""
    from diffusers.models.attention_processor import Attention

    for model in models:
        for m in model.modules() if model is not None else ():
            if isinstance(m, Attention) and m.is_cross_attention:
                m.set_processor(OneTokenCrossAttnProcessor())


def freeze(module: nn.Module | None) -> None:
    if module is not None:
        for p in module.parameters():
            p.requires_grad_(False)
