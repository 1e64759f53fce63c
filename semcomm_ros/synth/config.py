"""Configuration of the causal video diffusion synthesizer (paper IV-B, V-D).

One plain dataclass that round-trips to JSON (``synthesizer.json`` in a model directory). It names
the parts of the model (sub-directories / files relative to the model directory) and carries the
paper's operating point: lambda_C, lambda_R, lambda_T, window W, steps T and the causal mode.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from semcomm_ros.ranges import Range, check_ranges

CONFIG_NAME = "synthesizer.json"
FORMAT_VERSION = 1

#: Named temporal-attention modes, see docs/synth.md ("Causality").
CAUSAL_MODES = ("sliding", "block")
#: Values accepted for ``temporal=`` in ``SynthModel.predict_noise``.
TEMPORAL_MODES = ("bidirectional", "causal", "sliding", "block", "off")
DEGRADED_NOISE = ("forward", "none")
#: Values of ``SynthConfig.noise``.
NOISE_MODES = ("per_frame", "shared")
VAE_CLASSES = ("AutoencoderKL", "AutoencoderTiny")
#: where a frame's networks run: ONNX Runtime graphs (synth/runtime.py) or eager PyTorch
RUNTIMES = ("onnx", "torch")


def default_parts() -> dict[str, str | None]:
    """Where each part lives inside a model directory; ``None`` = the model has no such part."""
    return {
        "unet": "unet",
        "vae": "vae",
        "scheduler": "scheduler",
        "controlnet": "controlnet",
        "restoration_adapter": "restoration_adapter.safetensors",
        "temporal_adapter": "temporal_adapter",
        "refiner": None,  # the Semantic Refiner rho (ours, refiner.py); None -> the VAE decoder's output as is
        "null_embedding": None,  # None -> zeros of shape [1, null_tokens, cross_attention_dim]
    }


def valid_strength(value) -> bool:
    """The rule for ``SynthConfig.strength`` (also checked up front by the demo/eval options)."""
    return SynthConfig.RANGES["strength"].error("strength", value) is None


@dataclass
class SynthConfig:
    """Everything needed to rebuild and run a synthesizer besides the weights themselves."""

    height: int = 128
    width: int = 128
    #: labels must be in 0..num_classes-1; the label map is one-hot encoded for the ControlNet
    num_classes: int = 8
    label_encoding: str = "one_hot"
    #: the degraded frame is height/lowres_factor x width/lowres_factor (paper V-C: 4x lower)
    lowres_factor: int = 4
    #: module weights (paper VI-A): Semantic Control, Restoration Adapter, Temporal Adapter
    lambda_c: float = 0.4
    lambda_r: float = 0.8
    lambda_t: float = 1.0
    #: weight of the Semantic Refiner's residual (ours, refiner.py): 0 = the VAE decoder's output as is
    lambda_rho: float = 1.0
    #: data consistency when the frame is brought to the camera's size (upsample.to_camera): share
    #: of the output's low band replaced by the received low-res frame's, on the background (class 0)
    #: and on the objects; 0 = none. The received frame is faithful on the table and smears objects.
    consistency: float = 0.0
    consistency_objects: float = 0.0
    #: temporal window W (frames, the current one included) and denoising steps T
    window: int = 3
    num_steps: int = 4
    #: share of the T steps that run (img2img / SDEdit-style start). 1 = the paper: every frame from
    #: pure noise x_T. s < 1: the first T - round(s*T) steps are skipped and the frame starts from
    #: the degraded frame's latent x~ forward-noised to the first step that runs, so the output
    #: keeps the received colours and layout, flickers less and costs fewer UNet calls.
    strength: float = 1.0
    #: "sliding" (default, no added delay) or "block" (Eq. 9 literally), see docs/synth.md
    causal: str = "sliding"
    #: "none" (default): the clean degraded latent x~_0 enters the backbone with the same timestep t,
    #: so the degraded cue is intact at every step; "forward": x~_t = q(x~_t | x~_0), the literal
    #: reading of the paper's notation x~_t, which drowns the cue in noise at the first steps
    degraded_noise: str = "none"
    #: "per_frame" (the paper): every frame draws its own x_T and re-noising from its seed;
    #: "shared": every frame of a stream reuses the first frame's draws, so what the scene does not
    #: change is synthesized the same way on every frame (less flicker; docs/synth.md)
    noise: str = "per_frame"
    #: tokens of the null (empty-prompt) embedding fed to cross-attention
    null_tokens: int = 1
    vae_class: str = "AutoencoderTiny"
    #: the VAE's downsampling factor f and the latent patch p around the UNet (space-to-depth, DiT's
    #: "patch size"): the UNet runs at H/(f*p) with C*p*p channels. v5: f=8, p=1; v6: f=4, p=2 (a
    #: 32x32 latent at 128x128 for the cost of a 16x16 UNet)
    vae_factor: int = 8
    latent_patch: int = 1
    #: "onnx" (the default: 3-4x the frames of eager PyTorch on a CPU; falls back to "torch", with one
    #: logged line, where onnxruntime is missing or the model does not export) or "torch"
    runtime: str = "onnx"
    parts: dict[str, str | None] = field(default_factory=default_parts)
    format_version: int = FORMAT_VERSION

    # what each field accepts; the decoder node declares its operating-point parameters from here
    RANGES = {
        "num_classes": Range("label classes; a label map holds ids 0..num_classes-1", 1, 65536),
        "label_encoding": Range("how a label map enters the ControlNet", choices=("one_hot",)),
        "lambda_c": Range("Semantic Control weight lambda_C", 0.0, 4.0),
        "lambda_r": Range("Restoration Adapter weight lambda_R", 0.0, 4.0),
        "lambda_t": Range("Temporal Adapter weight lambda_T", 0.0, 4.0),
        "lambda_rho": Range("Semantic Refiner weight lambda_rho", 0.0),
        "consistency": Range("data consistency toward the received frame on the background", 0.0, 1.0),
        "consistency_objects": Range("data consistency toward the received frame on the objects", 0.0, 1.0),
        # no upper bound here: the model's Temporal Adapter sets it (motion_max_seq_length)
        "window": Range("causal temporal window W, frames", 1),
        "num_steps": Range("denoising steps T", 1, 50),
        "strength": Range("share of the T steps run, starting from the received low-res frame (1 = from pure "
                          "noise, as in the paper)", 0.0, 1.0, lo_open=True),
        "causal": Range("temporal attention mode", choices=CAUSAL_MODES),
        "degraded_noise": Range("how the degraded latent enters the backbone", choices=DEGRADED_NOISE),
        "noise": Range("noise draws: per_frame (the paper) or shared (the stream's first frame's)",
                       choices=NOISE_MODES),
        "null_tokens": Range("tokens of the null embedding", 1),
        "vae_class": Range("VAE architecture", choices=VAE_CLASSES),
        "vae_factor": Range("the VAE's downsampling factor f", choices=(1, 2, 4, 8, 16, 32), read_only=True),
        "latent_patch": Range("latent patch p: the UNet sees p x p latent cells as one (space-to-depth)",
                              choices=(1, 2, 4), read_only=True),
        "runtime": Range("where the frame's networks run: onnx (ONNX Runtime graphs, exported once per model "
                         "into the user's cache; torch where unavailable) or torch (eager)", choices=RUNTIMES,
                         read_only=True),
    }

    def __post_init__(self) -> None:
        self.validate()

    # -- checks -------------------------------------------------------------------------------
    def validate(self) -> None:
        """Each field against ``RANGES``, then what ties fields together."""
        check_ranges(self)

        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ValueError(f"SynthConfig: {msg}")

        need(self.height > 0 and self.width > 0, f"height/width must be positive, got {self.height}x{self.width}")
        cell = self.vae_factor * self.latent_patch
        need(self.height % cell == 0 and self.width % cell == 0,
             f"height/width must be multiples of {cell} (the UNet's latent is 1/(vae_factor x latent_patch) = "
             f"1/{cell}), got {self.height}x{self.width}")
        need(self.lowres_factor >= 1 and self.height % self.lowres_factor == 0
             and self.width % self.lowres_factor == 0,
             f"lowres_factor {self.lowres_factor} must divide {self.height}x{self.width}")
        need(self.format_version == FORMAT_VERSION,
             f"format_version {self.format_version} is not supported (this code reads {FORMAT_VERSION})")
        unknown = set(self.parts) - set(default_parts())
        need(not unknown, f"unknown parts {sorted(unknown)}; known: {sorted(default_parts())}")
        for key in ("unet", "vae", "scheduler"):
            need(self.parts.get(key) is not None, f"parts[{key!r}] is required")

    @property
    def start_step(self) -> int:
        """Index of the first of the T steps that runs (0 unless strength < 1)."""
        return self.num_steps - max(1, min(self.num_steps, round(self.strength * self.num_steps)))

    @property
    def latent_height(self) -> int:
        """The UNet's latent grid (after the latent patch)."""
        return self.height // (self.vae_factor * self.latent_patch)

    @property
    def latent_width(self) -> int:
        return self.width // (self.vae_factor * self.latent_patch)

    @property
    def lowres_size(self) -> tuple[int, int]:
        return self.height // self.lowres_factor, self.width // self.lowres_factor

    # -- JSON -----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SynthConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"SynthConfig: unknown keys {sorted(unknown)}")
        data = dict(data)
        if "parts" in data:
            parts = default_parts()
            parts.update(data["parts"])
            data["parts"] = parts
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> "SynthConfig":
        return cls.from_dict(json.loads(text))

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / CONFIG_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json() + "\n")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> "SynthConfig":
        path = Path(directory) / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(f"no synthesizer config {path} (a model directory holds {CONFIG_NAME} "
                                    f"naming its parts: unet/, vae/, controlnet/, ...)")
        try:
            return cls.from_json(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from exc

    def replace(self, **changes: Any) -> "SynthConfig":
        return dataclasses.replace(self, **changes)
