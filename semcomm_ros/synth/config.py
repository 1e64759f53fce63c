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
    return isinstance(value, (int, float)) and 0 < value <= 1


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
    parts: dict[str, str | None] = field(default_factory=default_parts)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        self.validate()

    # -- checks -------------------------------------------------------------------------------
    def validate(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ValueError(f"SynthConfig: {msg}")

        need(self.height > 0 and self.width > 0, f"height/width must be positive, got {self.height}x{self.width}")
        need(self.height % 8 == 0 and self.width % 8 == 0,
             f"height/width must be multiples of 8 (VAE latents are 1/8), got {self.height}x{self.width}")
        need(self.lowres_factor >= 1 and self.height % self.lowres_factor == 0
             and self.width % self.lowres_factor == 0,
             f"lowres_factor {self.lowres_factor} must divide {self.height}x{self.width}")
        need(1 <= self.num_classes <= 65536, f"num_classes must be in 1..65536, got {self.num_classes}")
        need(self.label_encoding == "one_hot", f"label_encoding must be 'one_hot', got {self.label_encoding!r}")
        for name in ("lambda_c", "lambda_r", "lambda_t", "lambda_rho"):
            v = getattr(self, name)
            need(isinstance(v, (int, float)) and v >= 0, f"{name} must be a number >= 0, got {v!r}")
        need(self.window >= 1, f"window W must be >= 1, got {self.window}")
        need(self.num_steps >= 1, f"num_steps T must be >= 1, got {self.num_steps}")
        for name in ("consistency", "consistency_objects"):
            v = getattr(self, name)
            need(isinstance(v, (int, float)) and 0 <= v <= 1, f"{name} must be in [0, 1], got {v!r}")
        need(valid_strength(self.strength), f"strength must be in (0, 1], got {self.strength!r}")
        need(self.causal in CAUSAL_MODES, f"causal must be one of {CAUSAL_MODES}, got {self.causal!r}")
        need(self.degraded_noise in DEGRADED_NOISE,
             f"degraded_noise must be one of {DEGRADED_NOISE}, got {self.degraded_noise!r}")
        need(self.noise in NOISE_MODES, f"noise must be one of {NOISE_MODES}, got {self.noise!r}")
        need(self.null_tokens >= 1, f"null_tokens must be >= 1, got {self.null_tokens}")
        need(self.vae_class in VAE_CLASSES, f"vae_class must be one of {VAE_CLASSES}, got {self.vae_class!r}")
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
        return self.height // 8

    @property
    def latent_width(self) -> int:
        return self.width // 8

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
