"""Training data: tabletop clips -> frames, label maps and degraded frames, cached to disk.

Rendering clips and pushing them through the real low-res codec costs far more than a training
step of the small CPU models, so a data set is rendered once and cached as one ``.npz`` under
``.cache/training/`` (ignored by git), keyed by everything that changes its content.

Degradations (paper V-C, V-D3): the Restoration Adapter must see what the operator's decoder
really receives, so the default degradation is "codec": each clip goes through
``LowResEncoder``/``LowResDecoder`` at the target rate (4x smaller frames at ~1 kbps). The paper's
Real-ESRGAN-style pipeline (4x downsampling, blur, noise, JPEG) is available as "realesrgan", and
"mixed" draws one of the two per clip.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from semcomm_ros.scenes import tabletop_clip

from .config import SOURCE_FIELDS, DataConfig

CACHE_DIR = Path(os.environ.get("SEMCOMM_CACHE", Path(__file__).resolve().parents[2] / ".cache")) / "training"
DEGRADATIONS = ("codec", "realesrgan", "mixed")


@dataclass
class ClipSet:
    """Arrays of N clips of F frames: frames (N,F,H,W,3) u8, labels (N,F,H,W) u8, lowres (N,F,h,w,3) u8."""

    frames: np.ndarray
    labels: np.ndarray
    lowres: np.ndarray
    degradation: str
    # the label maps as the operator receives them (sources.decoded_labels), same shape as labels;
    # None where no stage asked for them
    decoded: np.ndarray | None = None

    @property
    def num_clips(self) -> int:
        return int(self.frames.shape[0])

    @property
    def frames_per_clip(self) -> int:
        return int(self.frames.shape[1])


def realesrgan_degrade(frame: np.ndarray, factor: int, rng: np.random.Generator) -> np.ndarray:
    """Real-ESRGAN-style first-order degradation [59]: blur, downsample, noise, JPEG.

    Returns the low-resolution frame (H/factor x W/factor x 3, uint8), as the low-res stream
    delivers it; the synthesizer does its own upsampling.
    """
    h, w = frame.shape[:2]
    img = frame.astype(np.float32)
    sigma = float(rng.uniform(0.2, 2.0))
    img = cv2.GaussianBlur(img, (0, 0), sigmaX=sigma)
    interp = [cv2.INTER_AREA, cv2.INTER_LINEAR, cv2.INTER_CUBIC][int(rng.integers(3))]
    img = cv2.resize(img, (w // factor, h // factor), interpolation=interp)
    if rng.random() < 0.5:  # Gaussian vs Poisson-like (signal-dependent) noise
        img = img + rng.normal(0.0, rng.uniform(1.0, 12.0), img.shape)
    else:
        img = img + rng.normal(0.0, 1.0, img.shape) * np.sqrt(np.clip(img, 0, 255)) * rng.uniform(0.1, 1.0)
    img = np.clip(img, 0, 255).astype(np.uint8)
    quality = int(rng.integers(20, 70))
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed inside the Real-ESRGAN degradation")
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED).reshape(img.shape)


def codec_degrade(frames: np.ndarray, cfg: DataConfig) -> np.ndarray:
    """A whole clip through the real low-res stream, as the operator's synthesizer receives it.

    ``frames`` are the camera frames (cfg.camera_resolution, as the robot codes them): LowResEncoder
    -> bytes -> LowResDecoder, then area-averaged to resolution / lowres_factor as
    ``system.synthesize`` does before the synthesizer.
    """
    try:  # deferred: only this degradation needs the codec, and the "realesrgan" one works without it
        from semcomm_ros.codec import LowResDecoder, LowResEncoder
    except ImportError as exc:  # the low-res codec lives in another module of this package
        raise RuntimeError(
            "degradation 'codec' needs semcomm_ros.codec.LowResEncoder/LowResDecoder, which is not "
            f"importable ({exc}); use --degradation realesrgan"
        ) from exc
    h, w = frames.shape[1:3]
    enc = LowResEncoder(w, h, fps=int(round(cfg.fps)), scale=cfg.lowres_factor, kbps=cfg.lowres_kbps)
    dec = LowResDecoder()
    size = cfg.resolution // cfg.lowres_factor
    out, last = [], None
    for f in frames:
        low = dec.decode(enc.encode(np.ascontiguousarray(f)))
        if low is None:  # nothing decodable yet: the operator has no appearance cue at all
            low = last if last is not None else np.zeros((size, size, 3), np.uint8)
        low = np.asarray(low, np.uint8)
        if low.shape[:2] != (size, size):
            low = cv2.resize(low, (size, size), interpolation=cv2.INTER_AREA)
        last = low
        out.append(low)
    return np.stack(out)


def _key(cfg: DataConfig, degradation: str) -> str:
    # v4: frames and labels are the camera's render brought to the model's size
    d = {k: v for k, v in asdict(cfg).items() if k not in SOURCE_FIELDS or cfg.source}
    blob = json.dumps({"cfg": d, "deg": degradation, "v": 4}, sort_keys=True).encode()
    return hashlib.sha1(blob).hexdigest()[:12]


def render_clip(seed: int, frames: int, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    rgb, lab = [], []
    for f_rgb, f_lab in tabletop_clip(seed, frames, width=resolution, height=resolution):
        rgb.append(np.asarray(f_rgb, np.uint8))
        lab.append(np.asarray(f_lab, np.uint8))
    return np.stack(rgb), np.stack(lab)


def camera_clip(seed: int, cfg: DataConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One training clip as the operator's synthesizer meets it: (camera frames, frames and labels at
    the model's size). A scene rendered at another size is another video (its motion is integrated
    in pixels and drifts apart within a second), so the model's frames are the camera's render
    brought down as ``receiver.model_inputs`` brings a received frame: area-averaged frames,
    nearest-neighbour labels. The low-res stream and the decoded label maps come from the same
    camera frames, so every input of a sample shows the same instant."""
    cam, cam_labels = render_clip(seed, cfg.frames_per_clip, cfg.camera_resolution)
    size = (cfg.resolution, cfg.resolution)
    if cam.shape[1:3] == size:
        return cam, cam, cam_labels
    rgb = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in cam])
    lab = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_NEAREST) for f in cam_labels])
    return cam, rgb, lab


def build_clipset(cfg: DataConfig, degradation: str = "codec", cache: bool = True,
                  progress: bool = True) -> ClipSet:
    """Render ``cfg.clips`` tabletop clips (seeds first_seed...), degrade them, cache to disk."""
    if degradation not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {degradation!r}; expected one of {', '.join(DEGRADATIONS)}")
    if cfg.resolution % (8 * cfg.lowres_factor) and cfg.resolution % cfg.lowres_factor:
        raise ValueError(f"resolution {cfg.resolution} is not divisible by lowres_factor {cfg.lowres_factor}")
    path = CACHE_DIR / f"clips_{_key(cfg, degradation)}.npz"
    if cache and path.is_file():
        with np.load(path) as z:
            return ClipSet(z["frames"], z["labels"], z["lowres"], degradation)
    from tqdm.auto import tqdm

    frames, labels, lowres = [], [], []
    it = range(cfg.clips)
    bar = tqdm(it, desc=f"render {cfg.clips} clips ({degradation})", disable=not progress)
    for i in bar:
        seed = cfg.first_seed + i
        cam, rgb, lab = camera_clip(seed, cfg)
        deg = degradation
        if deg == "mixed":
            deg = "codec" if i % 2 == 0 else "realesrgan"
        if deg == "codec":
            low = codec_degrade(cam, cfg)
        else:
            rng = np.random.default_rng(seed)
            low = np.stack([realesrgan_degrade(f, cfg.lowres_factor, rng) for f in rgb])
        frames.append(rgb)
        labels.append(lab)
        lowres.append(low)
    cs = ClipSet(np.stack(frames), np.stack(labels), np.stack(lowres), degradation)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, frames=cs.frames, labels=cs.labels, lowres=cs.lowres)
        os.replace(tmp, path)
    return cs


class BatchSampler:
    """Deterministic batches: the indices of step ``s`` depend only on (seed, s, rank).

    This makes resume exact without saving sampler state, and shards across processes.
    """

    def __init__(self, clips: ClipSet, batch_size: int, frames: int = 1, seed: int = 0,
                 rank: int = 0, world: int = 1, decoded_share: float = 0.0):
        if frames > clips.frames_per_clip:
            raise ValueError(f"stage wants {frames} frames per sample but clips have {clips.frames_per_clip}")
        if not 0.0 <= decoded_share <= 1.0:
            raise ValueError(f"decoded_labels must lie in [0, 1], got {decoded_share}")
        if decoded_share and clips.decoded is None:
            raise ValueError("decoded_labels > 0 needs the clips' decoded label maps (sources.decoded_labels)")
        self.clips, self.batch_size, self.frames = clips, batch_size, frames
        self.decoded_share = decoded_share
        self.seed, self.rank, self.world = seed, rank, world

    def indices(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, step, self.rank])
        ci = rng.integers(0, self.clips.num_clips, self.batch_size)
        fi = rng.integers(0, self.clips.frames_per_clip - self.frames + 1, self.batch_size)
        return ci, fi

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """frames (B,K,H,W,3) u8, labels (B,K,H,W) u8, lowres (B,K,h,w,3) u8; K = self.frames."""
        ci, fi = self.indices(step)
        sl = [np.arange(f, f + self.frames) for f in fi]
        out = {
            "frames": np.stack([self.clips.frames[c, s] for c, s in zip(ci, sl)]),
            "labels": np.stack([self.clips.labels[c, s] for c, s in zip(ci, sl)]),
            "lowres": np.stack([self.clips.lowres[c, s] for c, s in zip(ci, sl)]),
        }
        if self.decoded_share:
            # its own stream: a run without decoded label maps draws exactly the batches it drew before
            pick = np.random.default_rng([self.seed, step, self.rank, 2]).random(self.batch_size) < self.decoded_share
            for b in np.flatnonzero(pick):
                out["labels"][b] = self.clips.decoded[ci[b], sl[b]]
        rng = np.random.default_rng([self.seed, step, self.rank, 1])
        # Flip augmentation: the top-down camera has no preferred orientation. flip = h + 2 * v,
        # kept in the batch so stages can look up latents cached per flip (LatentCache).
        flips = np.zeros(self.batch_size, np.int64)
        for b in range(self.batch_size):
            h, v = rng.random() < 0.5, rng.random() < 0.5
            flips[b] = int(h) + 2 * int(v)
            for k in ("frames", "labels", "lowres"):
                out[k][b] = flip_array(out[k][b], flips[b], spatial_axes=(1, 2))
        out["clip"], out["start"], out["flip"] = ci, fi, flips
        return out


def flip_array(x: np.ndarray, flip: int, spatial_axes=(0, 1)) -> np.ndarray:
    """Flip code 0..3 = horizontal + 2 * vertical, applied on the given (row, col) axes."""
    if flip & 1:
        x = np.flip(x, axis=spatial_axes[1])
    if flip & 2:
        x = np.flip(x, axis=spatial_axes[0])
    return np.ascontiguousarray(x)


def to_tensor_images(x: np.ndarray):
    """uint8 (...,H,W,3) -> float tensor (...,3,H,W) in [-1, 1]."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(x)).float().div_(127.5).sub_(1.0)
    return t.movedim(-1, -3)
