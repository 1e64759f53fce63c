"""Training configuration: the paper's hyper-parameters (V-D) as defaults, plus the presets.

Every stage is configured by one :class:`StageConfig`; a :class:`Preset` bundles the data, the
backbone architecture and one StageConfig per stage. Configs are plain dataclasses that
round-trip through JSON (``to_dict`` / ``from_dict``), as diffusers configs do.

Presets:
- ``paper``: the values printed in the paper (batch 16, lr 2e-6 / 1e-5, 1e5 iterations, K=16, ...)
  for an SD-1.5-sized model on GPUs. Listed for reference and for users with real hardware.
- ``tabletop``: what trains the shipped default model (versions 6 and 7: an f=4 VAE, a 32x32 latent
  at 128x128, with a 2x2 latent patch around the 16x16 UNet) on 2 CPU cores in about four hours.
- ``tabletop-v5``: the version-5 recipe (the f=8 VAE, a 16x16 latent), kept for its runs.
- ``tiny``: a few-second configuration for tests and ``semcomm bench train``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from semcomm_ros.scenes.splits import SYNTH_TRAIN_SEED0

STAGES: tuple[str, ...] = ("vae", "backbone", "control", "restoration", "teacher", "lcm", "dmd", "refiner")


@dataclass
class StageConfig:
    """Optimiser and schedule of one stage (AdamW as in the paper, V-D)."""

    steps: int = 1000
    batch_size: int = 16
    lr: float = 1e-4
    weight_decay: float = 1e-2  # paper: AdamW, weight decay 1e-2
    grad_clip: float = 1.0  # paper: gradient clipping of 1
    grad_accum: int = 1
    warmup_steps: int = 0
    lr_halve_at: int = 0  # from this step on, half the learning rate (0: never)
    checkpoint_every: int = 200
    log_every: int = 10
    seed: int = 0
    # stage-specific knobs (ignored by stages that do not use them)
    frames: int = 1  # K: frames per training sample (video stages)
    window: int = 3  # W: causal window of the student (lcm, dmd)
    lambda_c: float = 0.4  # Semantic Control weight used while training psi
    lambda_r: float = 0.8  # Restoration weight used while training omega
    # restoration: train omega with psi on at lambda_c (the paper omits psi). Alone, omega learns
    # to pull toward the blurry received frame and costs mIoU beside psi; with psi on it learns
    # what psi does not already give (MODEL_CARD.md)
    with_control: bool = False
    teacher_samples: int = 8  # lcm: videos sampled from the teacher (paper: 1e3)
    teacher_steps: int = 20  # lcm: DDIM steps used to sample the teacher
    skip: int = 20  # lcm: ODE jump s in train timesteps
    critic_lr: float = 0.0  # dmd: critic learning rate (0 -> same as lr)
    critic_updates: int = 1  # dmd: critic updates per student update
    student_steps: int = 4  # dmd: T, sampling steps of the student generator
    t_min: int = 20  # dmd: t ~ U[t_min, t_max] for the score estimates
    t_max: int = 980
    degradation: str = "codec"  # restoration: "codec" (real low-res stream) | "realesrgan" | "mixed"
    # control, restoration, teacher, lcm (its teacher samples), dmd: share of samples conditioned on the label maps the
    # operator receives (the robot's segmenter, the semantic codec, the 2 kbps link:
    # sources.decoded_labels) instead of the exact ones, so that psi learns the shapes it is given
    # in use; the target stays the camera's frame
    decoded_labels: float = 0.0
    # vae, backbone, control, restoration, teacher: extra weight of the loss on object pixels
    # (labels > 0; latent cells by their share of object pixels). The table fills ~90 % of a
    # tabletop frame, so an unweighted loss learns the table and blurs the objects away, and with
    # them what the segmenter (and the operator) needs to tell the classes apart.
    object_weight: float = 0.0
    # vae / backbone: warm start from the vae/ or unet/ of this model directory (e.g. the shipped
    # model) instead of a random init; "" = random init
    init: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class DataConfig:
    """Which tabletop clips the stages train on (rendered once, cached under ``.cache/``)."""

    resolution: int = 128
    clips: int = 48
    frames_per_clip: int = 16
    first_seed: int = SYNTH_TRAIN_SEED0  # scenes.splits: no evaluation or tuning clip comes from here
    lowres_factor: int = 4  # paper V-C: degraded frames at 4x lower spatial resolution
    lowres_kbps: float = 1.0  # paper V-C: 1 kbps for YCB-Sim
    fps: float = 10.0  # paper V-A: 10 frames per second
    # "codec" degradation: the robot codes its camera frames (this size, square), not the training
    # frames; the low-res stream's coded size and quantizers follow the camera size and the rate
    camera_resolution: int = 512
    # own recordings instead of the procedural tabletop scenes (training/sources.py): a rosbag2
    # folder, or a folder of MP4 files / image sequences; "" = procedural scenes
    source: str = ""
    image_topic: str = ""  # rosbag2: the camera topic (sensor_msgs/Image or CompressedImage)
    label_topic: str = ""  # rosbag2: a mono8 label topic; "" = labelled by the segmenter
    # class list (YAML, `classes: [name0, name1, ...]`, id 0 = background); "" = the tabletop classes
    classes: str = ""
    segmenter: str = ""  # pseudo-labels: segmentation config YAML; "" = the shipped config/segmentation.yaml


#: DataConfig fields that say where recorded clips come from; left out of the procedural clips'
#: cache key, so that caches rendered before they existed stay valid
SOURCE_FIELDS = ("source", "image_topic", "label_topic", "classes", "segmenter")


@dataclass
class BackboneConfig:
    """The compact backbone of the tabletop preset: AutoencoderTiny + UNet2DConditionModel."""

    # 8 latent channels at 1/8 (SD has 4): a 24x bottleneck instead of 48x, which a VAE trained
    # for minutes on a CPU can reconstruct; the UNet's cost barely depends on it
    latent_channels: int = 8
    vae_channels: int = 48
    # 4 levels = 3 downsamplings -> latent 1/8 of the frame, as SD's VAE. No residual block at full
    # resolution (encoder level 0, decoder last level): they cost most and add little at 128x128.
    vae_encoder_blocks: tuple[int, ...] = (0, 1, 1, 1)
    vae_decoder_blocks: tuple[int, ...] = (2, 2, 1, 0)
    vae_crop: int = 64  # the VAE is fully convolutional: train it on random crops (4x cheaper)
    # the UNet sees latent_patch x latent_patch latent cells as one (space-to-depth): an f=4 VAE's
    # 32x32 latent at a 16x16 UNet's cost (SynthConfig.latent_patch)
    latent_patch: int = 1
    unet_channels: tuple[int, ...] = (32, 64, 64)
    unet_layers_per_block: int = 1
    attention_head_dim: int = 8
    cross_attention_dim: int = 32
    norm_num_groups: int = 8
    num_train_timesteps: int = 1000
    beta_start: float = 0.00085  # SD 1.5's scaled-linear schedule
    beta_end: float = 0.012
    beta_schedule: str = "scaled_linear"
    # what the UNet predicts. SD 1.5 predicts the noise; at T=4 steps from pure noise its x_0
    # estimate at t=999 divides the noise error by sqrt(abar) = 0.07, i.e. amplifies it ~15x,
    # which a small CPU-trained UNet cannot afford: the tabletop preset predicts v instead.
    prediction_type: str = "epsilon"
    # the synthesizer's noise draws (SynthConfig.noise) written into the model a run assembles:
    # "per_frame" is the paper's; the tabletop preset ships "shared" (MODEL_CARD.md: less flicker
    # and higher mIoU with the CPU-sized Temporal Adapter)
    noise: str = "per_frame"


@dataclass
class PretrainedConfig:
    """Local public checkpoints the paper starts from (paper V-D); nothing is ever downloaded."""

    # a diffusers Stable Diffusion folder (model_index.json, unet/, vae/, scheduler/,
    # text_encoder/, tokenizer/) or a single .safetensors checkpoint: the frozen backbone
    backbone: str = ""
    # for a single-file backbone: a diffusers SD folder holding the configs and tokenizer
    # ("" = diffusers' own defaults, from its local cache only)
    backbone_config: str = ""
    motion_adapter: str = ""  # AnimateDiff MotionAdapter folder or single file: the teacher phi
    controlnet: str = ""  # diffusers ControlNet folder: the initial psi


#: the SynthConfig fields a preset's operating point may set (what is tuned after training)
OPERATING_POINT = ("lambda_c", "lambda_r", "lambda_t", "lambda_rho", "consistency", "consistency_objects", "window",
                   "num_steps", "strength", "causal", "degraded_noise")
#: version 5's, tuned on the tuning clips after training (MODEL_CARD.md): psi at 0.7 (it was
#: trained with omega on at 0.7) and the table's low band from the received frame
OPERATING_POINT_V5 = {"lambda_c": 0.7, "consistency": 0.7}
#: version 6's (MODEL_CARD.md, "Operating point"), tuned the same way
OPERATING_POINT_V6 = {"lambda_c": 0.7, "consistency": 0.7}
#: version 7's (MODEL_CARD.md, "Operating point of version 7"), each chosen on demo clips: omega
#: at half weight (+0.015 mIoU for -0.05 dB against 0.8, 20 clips) and psi at full weight (+0.023
#: mIoU for -0.06 dB against 0.7, 30 clips)
OPERATING_POINT_V7 = {**OPERATING_POINT_V6, "lambda_r": 0.4, "lambda_c": 1.0}


@dataclass
class Preset:
    name: str
    data: DataConfig = field(default_factory=DataConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    stages: dict[str, StageConfig] = field(default_factory=dict)
    pretrained: PretrainedConfig = field(default_factory=PretrainedConfig)
    # the operating point the assembled model ships with (SynthConfig fields: lambdas, data
    # consistency, strength...), tuned after training and written here so that a from-scratch
    # `semcomm train all` reproduces the shipped synthesizer.json; {} = SynthConfig's defaults
    operating_point: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        unknown = sorted(set(self.operating_point) - set(OPERATING_POINT))
        if unknown:
            raise ValueError(f"preset {self.name!r}: operating_point fields {unknown} are not among "
                             f"{', '.join(OPERATING_POINT)}")

    def stage(self, name: str) -> StageConfig:
        if name not in STAGES:
            raise ValueError(f"unknown stage {name!r}; expected one of {', '.join(STAGES)}")
        return self.stages.get(name, StageConfig())

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "data": dataclasses.asdict(self.data),
            "backbone": dataclasses.asdict(self.backbone),
            "stages": {k: v.to_dict() for k, v in self.stages.items()},
            "pretrained": dataclasses.asdict(self.pretrained),
            "operating_point": dict(self.operating_point),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preset":
        bb = dict(d.get("backbone", {}))
        for k in ("unet_channels", "vae_encoder_blocks", "vae_decoder_blocks"):
            if k in bb:
                bb[k] = tuple(bb[k])
        return cls(
            name=d.get("name", "custom"),
            data=DataConfig(**d.get("data", {})),
            backbone=BackboneConfig(**bb),
            stages={k: StageConfig(**v) for k, v in d.get("stages", {}).items()},
            pretrained=PretrainedConfig(**d.get("pretrained", {})),
            operating_point=dict(d.get("operating_point", {})),
        )

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Preset":
        return cls.from_dict(json.loads(Path(path).read_text()))


def _paper() -> Preset:
    # Values printed in V-D. Resolution and frames refer to the paper's 512x512 YCB-Sim setting.
    return Preset(
        name="paper",
        data=DataConfig(resolution=512, clips=10_000, frames_per_clip=16),
        stages={
            "vae": StageConfig(steps=0),  # the paper uses SD's pretrained VAE
            "backbone": StageConfig(steps=0),  # ... and SD's pretrained, frozen UNet
            "control": StageConfig(steps=100_000, batch_size=16, lr=2e-6, grad_clip=1.0),
            "restoration": StageConfig(steps=100_000, batch_size=16, lr=1e-5, degradation="realesrgan"),
            "teacher": StageConfig(steps=0, frames=16),  # AnimateDiff's pretrained motion module
            "lcm": StageConfig(steps=8_000, batch_size=6, frames=16, window=3, teacher_samples=1_000),
            "dmd": StageConfig(steps=50_000, batch_size=6, frames=16, window=3, lr=1e-5),
            "refiner": StageConfig(steps=0),  # ours, not the paper's: `train refiner --steps N` adds it
        },
    )


def _tabletop_v5() -> Preset:
    # The per-stage budgets of version 5 (version 4's, MODEL_CARD.md, and rho's: there the backbone
    # started from version 3's and the VAE was version 3's). Far below the paper's budgets.
    # dmd: 0 steps -- at this budget (100 steps) DMD made the LCM student worse (PSNR 17.2 ->
    # 15.5 dB, more flicker), so the shipped phi is the LCM student; `train dmd --steps N` still runs it.
    return Preset(
        name="tabletop-v5",
        data=DataConfig(resolution=128, clips=48, frames_per_clip=16),
        backbone=BackboneConfig(prediction_type="v_prediction", noise="shared"),
        stages={
            "vae": StageConfig(steps=750, batch_size=16, lr=1e-3, checkpoint_every=250, object_weight=9.0),
            "backbone": StageConfig(steps=3000, batch_size=32, lr=5e-4, checkpoint_every=250, object_weight=4.0),
            "control": StageConfig(steps=8000, batch_size=16, lr=1e-3, checkpoint_every=500, object_weight=4.0),
            "restoration": StageConfig(steps=2000, batch_size=16, lr=1e-3, checkpoint_every=250, object_weight=4.0,
                                       with_control=True, lambda_c=0.7),
            "teacher": StageConfig(steps=1500, batch_size=2, frames=8, lr=1e-3, checkpoint_every=250,
                                   object_weight=4.0),
            "lcm": StageConfig(steps=300, batch_size=2, frames=8, window=3, lr=3e-4, teacher_samples=24,
                               teacher_steps=10, checkpoint_every=100),
            "dmd": StageConfig(steps=0, batch_size=2, frames=8, window=3, lr=1e-4, checkpoint_every=10),
            # the Semantic Refiner rho on the finished synthesizer's outputs (training/refiner.py)
            "refiner": StageConfig(steps=1500, batch_size=16, lr=1e-3, checkpoint_every=250, object_weight=4.0),
        },
        operating_point=dict(OPERATING_POINT_V5),
    )


def _tabletop() -> Preset:
    # Versions 6 and 7, the shipped model (MODEL_CARD.md): the f=4 VAE (version 5's without its coarsest
    # level, so each resolution keeps its blocks) gives a 32x32 latent at 128x128, and the 2x2
    # latent patch keeps the UNet at 16x16 (4x the channels in and out, only conv_in/conv_out
    # grow). The VAE ran 3000 steps at 1e-3, then 3000 at 5e-4; the shipped backbone started from
    # version 5's UNet where the shapes agree (`--init`), a run from scratch starts at random.
    p = _tabletop_v5()
    p.name = "tabletop"
    p.backbone = dataclasses.replace(p.backbone, vae_encoder_blocks=(0, 1, 1), vae_decoder_blocks=(2, 1, 0),
                                     latent_patch=2)
    p.stages["vae"] = dataclasses.replace(p.stages["vae"], steps=6000, lr_halve_at=3000, checkpoint_every=100)
    p.stages["backbone"] = dataclasses.replace(p.stages["backbone"], steps=4000)
    p.operating_point = dict(OPERATING_POINT_V7)
    return p


def _tiny() -> Preset:
    return Preset(
        name="tiny",
        data=DataConfig(resolution=32, clips=2, frames_per_clip=4, lowres_factor=4),
        backbone=BackboneConfig(vae_channels=8, vae_encoder_blocks=(0, 1, 1, 1), vae_decoder_blocks=(1, 1, 1, 0),
                                vae_crop=16, unet_channels=(16, 32), cross_attention_dim=16,
                                attention_head_dim=8, norm_num_groups=8, prediction_type="v_prediction"),
        stages={
            s: StageConfig(steps=3, batch_size=2, lr=1e-3, checkpoint_every=2, log_every=1, frames=4 if s in
                           ("teacher", "lcm", "dmd") else 1, window=2, teacher_samples=2, teacher_steps=2,
                           degradation="realesrgan", object_weight=4.0)
            for s in STAGES
        },
    )


PRESETS = {"paper": _paper, "tabletop": _tabletop, "tabletop-v5": _tabletop_v5, "tiny": _tiny}


def get_preset(name: str) -> Preset:
    """A fresh copy of a named preset, or a JSON file written by :meth:`Preset.save`."""
    if name in PRESETS:
        return PRESETS[name]()
    p = Path(name)
    if p.suffix == ".json" and p.is_file():
        return Preset.load(p)
    raise ValueError(f"unknown preset {name!r}; expected one of {', '.join(PRESETS)} or a preset .json file")
