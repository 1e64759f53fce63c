"""CausalSynthesizer: streaming, few-step, causal video synthesis with a KV cache (paper IV-B5).

``synth(labels, lowres, seed=k)`` returns the next frame of the stream. Each frame runs T LCM
steps; at denoising step s the Temporal Adapter attends to the cached keys/values that the
previous W-1 frames left at the same step s (one cache per denoising step), so streaming equals
``generate_clip`` -- the same frames computed at once through the masked temporal attention.
Every frame draws its own noise from its seed (initial latent, LCM re-noising, degraded-latent
noise), identically in both paths.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import RUNTIMES
from .model import SynthModel
from .runstate import TemporalRun
from .runtime import FrameGraphs, RuntimeUnavailable
from .semantic_control import check_labels, condition_embedding
from .tiny import tiny_model

OUTPUTS = ("uint8", "float", "latent")


@dataclass(frozen=True)
class Denoised:
    """A streamed frame's x_0 and what rendering it reads (``CausalSynthesizer.denoise_frame`` hands
    it out, ``render`` draws it). Rendering reads no stream state, so frame k can be rendered on
    another thread while frame k+1 is denoised (the decoder node's output stage does)."""

    latents: torch.Tensor  # x_0, [1, C, h, w]
    onehot: torch.Tensor  # the label map, one-hot, for rho
    degraded: torch.Tensor | None  # the received frame in [-1, 1] for rho (None: none received)
    lambda_rho: float  # the operating point's, when the frame was denoised


def default_device_dtype(device=None, dtype=None) -> tuple[torch.device, torch.dtype]:
    """cuda + fp16 when a GPU is there, cpu + fp32 otherwise (either may be given explicitly)."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if dtype is None:
        dtype = torch.float16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        dtype = {"fp16": torch.float16, "float16": torch.float16, "bf16": torch.bfloat16,
                 "bfloat16": torch.bfloat16, "fp32": torch.float32, "float32": torch.float32}[dtype]
    return device, dtype


log = logging.getLogger(__name__)


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    """[..., 3, H, W] in [-1, 1] -> [..., H, W, 3] uint8."""
    x = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.movedim(-3, -1).cpu().numpy()


class CausalSynthesizer:
    """Frame-by-frame synthesis from decoded label maps and degraded low-res frames."""

    def __init__(self, model: SynthModel, device=None, dtype=None, runtime: str | None = None):
        """runtime: "onnx" (the frame's networks as ONNX Runtime graphs; falls back to "torch" with
        one logged line when onnxruntime is missing or the model does not export) or "torch";
        None: the config's ``runtime``."""
        self.device, self.dtype = default_device_dtype(device, dtype)
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        # convolutions run faster channels-last on CPU (oneDNN) and on GPU (cuDNN): ~7 % of a
        # frame on 2 CPU cores for the UNet and ControlNet, more for the VAE at full resolution
        for part in (self.model.vae, self.model.unet, self.model.controlnet, self.model.refiner):
            if part is not None:
                part.to(memory_format=torch.channels_last)
        self.config = model.config
        self.graphs: FrameGraphs | None = None
        self.runtime = self._start_runtime(runtime or self.config.runtime)
        self.reset()

    def _start_runtime(self, runtime: str) -> str:
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
        if runtime == "onnx":
            try:
                self.graphs = FrameGraphs.load(self.model, self.device, self.dtype)
            except RuntimeUnavailable as exc:
                log.warning("synthesizer runtime: torch (onnx unavailable: %s)", exc)
                return "torch"
            except Exception as exc:  # an exporter or runtime error on an unusual model
                log.warning("synthesizer runtime: torch (the model did not export to ONNX: %s: %s)",
                            type(exc).__name__, exc)
                return "torch"
        return runtime

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, device=None, dtype=None,
                        runtime: str | None = None) -> "CausalSynthesizer":
        """Load a model directory; without ``path`` the shipped model in synth/default_model/."""
        return cls(SynthModel.from_pretrained(path), device=device, dtype=dtype, runtime=runtime)

    @classmethod
    def tiny(cls, resolution: int = 64, seed: int = 0, device=None, dtype=None, runtime: str = "torch",
             **config) -> "CausalSynthesizer":
        """Same architecture with tiny random weights (tests, benchmarks; ``tiny.tiny_model``); torch
        unless asked, since every new tiny model would export its own graphs."""
        return cls(tiny_model(resolution=resolution, seed=seed, **config), device=device, dtype=dtype,
                   runtime=runtime)

    def save_pretrained(self, path: str | Path) -> Path:
        return self.model.save_pretrained(path)

    def check(self, config) -> None:
        """ValueError for what a config's own ranges cannot say: the model's Temporal Adapter bounds W."""
        temporal = self.model.temporal
        if temporal is not None and config.window > temporal.max_frames:
            raise ValueError(f"window {config.window} exceeds the model's Temporal Adapter "
                             f"({temporal.max_frames} frames)")

    def use(self, config) -> None:
        """Run ``config``'s operating point from the next frame: a new stream (the KV caches start
        afresh). The config replaces the synthesizer's and its model's (they share it), never patched
        in place. A new window W changes the graphs' cache layout: the onnx runtime loads (or exports)
        the graphs for it, seconds once per W."""
        self.check(config)
        old = self.config
        self.model.config = self.config = config
        if self.graphs is not None and config.window != old.window:
            self.graphs = None
            self.runtime = self._start_runtime("onnx")  # torch, with its logged reason, if that fails
        self.reset()

    # -- state ----------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Start a new stream: forget the KV caches of all denoising steps."""
        self._caches = [dict() for _ in range(self.config.num_steps)]
        self._tables: dict = {}
        self.frame_index = 0
        self._last_latent: torch.Tensor | None = None
        self._stream_seed: int | None = None  # the first frame's seed (noise="shared")
        if self.graphs is not None:
            self.graphs.reset(self.config.num_steps)

    @property
    def output_size(self) -> tuple[int, int]:
        return self.config.height, self.config.width

    @property
    def lowres_size(self) -> tuple[int, int]:
        return self.config.lowres_size

    # -- inputs ------------------------------------------------------------------------------------
    def frame_noise(self, seed: int) -> torch.Tensor:
        """[T+1, C, h, w]: x_T, the T-1 LCM re-noising draws, the degraded-latent noise.

        Drawn on the CPU in fp32 from ``seed`` in this order (the order LCMScheduler.step would
        draw them with a generator), then moved, so a seed gives the same frame on every device.
        """
        c = self.config
        shape = (1, self.model.unet.config.in_channels, c.latent_height, c.latent_width)
        gen = torch.Generator().manual_seed(int(seed))
        draws = [torch.randn(shape, generator=gen) for _ in range(c.num_steps + 1)]
        return torch.cat(draws).to(self.device, self.dtype)

    def _check_lowres(self, lowres) -> np.ndarray:
        """Degraded frames [F, h, w, 3] uint8, checked."""
        if isinstance(lowres, torch.Tensor):
            lowres = lowres.cpu().numpy()
        lowres = np.asarray(lowres)
        h, w = self.lowres_size
        if lowres.ndim != 4 or lowres.shape[1:] != (h, w, 3):
            raise ValueError(f"degraded frame must be {h}x{w}x3 (1/{self.config.lowres_factor} of "
                             f"{self.config.height}x{self.config.width}), got shape {lowres.shape[1:]}")
        if lowres.dtype != np.uint8:
            raise ValueError(f"degraded frame must be uint8, got {lowres.dtype}")
        return lowres

    def _degraded_images(self, lowres) -> torch.Tensor:
        """Degraded frames [F, h, w, 3] uint8 (checked) -> [F, 3, h, w] in [-1, 1], fp32."""
        return self.model.degraded_frames(self._device_lowres(lowres))

    def _device_lowres(self, lowres) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self._check_lowres(lowres))).to(self.device)

    def _lowres_latents(self, lowres) -> tuple[torch.Tensor, torch.Tensor]:
        """Degraded frames [F, h, w, 3] uint8 -> (x~ = E(upsampled frame) [F, C, H/8, W/8], the
        degraded frames as [F, 3, h, w] in [-1, 1] for the Semantic Refiner): ``SynthModel.encode_degraded``.
        """
        if self.graphs is not None and len(lowres) == 1:
            return self.graphs.encode(self._check_lowres(lowres))
        return self.model.encode_degraded(self._device_lowres(lowres))

    def _condition(self, labels) -> tuple[torch.Tensor | None, bool, torch.Tensor]:
        """One-hot label maps -> (the ControlNet's conditioning embedding, embedded?, the one-hot maps
        the Semantic Refiner reads), once per frame."""
        if self.graphs is not None and len(labels) == 1:
            labels = check_labels(labels, self.config.num_classes, self.output_size)
            emb, onehot = self.graphs.condition(labels)
            return emb, self.model.controlnet is not None, onehot
        cond = self.model.labels_to_condition(labels)
        if self.model.controlnet is None or self.config.lambda_c == 0:
            return cond, False, cond
        return condition_embedding(self.model.controlnet, cond), True, cond

    def _check_labels_shape(self, labels, frames: int | None):
        arr = labels if isinstance(labels, (np.ndarray, torch.Tensor)) else np.asarray(labels)
        want = self.output_size if frames is None else (frames, *self.output_size)
        if tuple(arr.shape) != tuple(want):
            what = "label map" if frames is None else "label maps"
            raise ValueError(f"{what} must have shape {want}, got {tuple(arr.shape)}")
        return arr

    # -- streaming ---------------------------------------------------------------------------------
    @torch.inference_mode()
    def step(self, labels, lowres=None, seed: int | None = None, output: str = "uint8"):
        """Synthesize the next frame. labels: HxW class ids; lowres: (H/4)x(W/4)x3 uint8 or None.

        output: "uint8" (HxWx3 numpy), "float" ([3, H, W] tensor in [-1, 1]) or "latent".
        """
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(map(repr, OUTPUTS))}, got {output!r}")
        frame = self.denoise_frame(labels, lowres, seed)
        return frame.latents[0] if output == "latent" else self.render(frame, output)

    __call__ = step

    @torch.inference_mode()
    def denoise_frame(self, labels, lowres=None, seed: int | None = None) -> Denoised:
        """The next frame of the stream up to x_0 (the T denoising steps; the KV caches move on).
        ``render`` makes the picture; ``step`` is both."""
        model, cfg = self.model, self.config
        if cfg.causal != "sliding" and model.temporal is not None and cfg.lambda_t != 0:
            raise ValueError(f"streaming runs the sliding-window causal mode; this config has causal="
                             f"{cfg.causal!r} (Eq. 9 block mode is available in generate_clip/predict_noise)")
        labels = self._check_labels_shape(labels, None)
        seed = self.frame_index if seed is None else seed
        if self._stream_seed is None:
            self._stream_seed = int(seed)
        if cfg.noise == "shared":
            seed = self._stream_seed
        cond, embedded, onehot = self._condition(labels[None])
        deg0, small = self._lowres_latents(np.asarray(lowres)[None]) if lowres is not None else (None, None)
        noise = self.frame_noise(seed)
        t_steps = model.timesteps()
        steps = len(t_steps)
        start = cfg.start_step
        # strength < 1 without a degraded frame (none received yet, or lost): the previous output
        # stands in for it, so the stream stays coherent; the very first frame starts from noise
        init = deg0 if deg0 is not None else self._last_latent
        if init is None:
            start = 0
        x = noise[0:1] if start == 0 else model.add_noise(init, t_steps[start], noise[0:1])
        for s in range(start, steps):  # strength < 1: the first steps are skipped
            t = t_steps[s]
            tt = torch.full((1,), t, device=self.device, dtype=torch.long)
            deg = model.degraded_input(deg0, tt, noise[steps:steps + 1]) if deg0 is not None else None
            eps = self._denoise(s, x, tt, cond, deg, embedded)
            x = model.lcm_step(s, t_steps, x, eps, noise[s + 1:s + 2] if s + 1 < steps else None)
        self.frame_index += 1
        self._last_latent = x
        return Denoised(x, onehot, small, float(cfg.lambda_rho))

    @property
    def renders_beside(self) -> bool:
        """Whether rendering frame k on a second thread while frame k+1 is denoised pays: on the graph
        runtime, whose denoiser runs on one core, yes (docs/synth.md: 10.6-11.9 -> 10.9-13.3 FPS at
        512x512 on 2 cores); on torch, whose threads share one pool, no (3.4 FPS against 5.0)."""
        return self.graphs is not None

    @torch.inference_mode()
    def render(self, frame: Denoised, output: str = "uint8", beside: bool = False):
        """D(x_0) refined by rho: HxWx3 uint8 (or [3, H, W] in [-1, 1] for output="float").

        Safe on another thread than ``denoise_frame``'s (it reads the weights and ``frame`` only);
        beside=True says so, and the graph runtime then renders on one thread."""
        if output not in ("uint8", "float"):
            raise ValueError(f"render's output must be 'uint8' or 'float', got {output!r}")
        return self._output(frame.latents, output, frame.onehot, frame.degraded, frame.lambda_rho, beside)[0]

    def _denoise(self, s: int, x, tt, cond, deg, embedded: bool) -> torch.Tensor:
        """eps at denoising step s of the current frame; phi reads and extends step s's KV cache."""
        cfg = self.config
        lambdas = (float(cfg.lambda_c), float(cfg.lambda_r), float(cfg.lambda_t))
        if self.graphs is not None:
            return self.graphs.denoise(s, x, tt, cond, deg, lambdas)
        run = TemporalRun(mode="sliding", frames=1, lambda_t=lambdas[2], window=cfg.window, cache=self._caches[s],
                          tables=self._tables)
        return self.model.denoise_rows(x, tt, cond, deg, lambdas[0], lambdas[1], run, embedded)

    @torch.inference_mode()
    def reconstruct(self, image, labels, lowres=None) -> np.ndarray:
        """An image at the model's size through E and the model's decoder (with rho), no denoising.

        The clean frame gives the backbone's reconstruction ceiling: the best any denoiser on this
        backbone can draw. The degraded frame upsampled gives what rho makes without the diffusion.
        Returns HxWx3 uint8.
        """
        image = np.asarray(image)
        if image.shape != (*self.output_size, 3) or image.dtype != np.uint8:
            raise ValueError(f"image must be {self.output_size[0]}x{self.output_size[1]}x3 uint8, got "
                             f"{image.shape} {image.dtype}")
        labels = self._check_labels_shape(labels, None)
        x = torch.from_numpy(np.ascontiguousarray(image)).to(self.device).permute(2, 0, 1)[None]
        latents = self.model.encode_images((x.to(torch.float32) / 127.5 - 1).to(self.dtype))
        small = self._degraded_images(np.asarray(lowres)[None]).to(self.dtype) if lowres is not None else None
        return self._output(latents, "uint8", self.model.labels_to_condition(labels[None]), small)[0]

    def _output(self, latents: torch.Tensor, output: str, onehot=None, degraded=None, lambda_rho=None,
                beside: bool = False):
        if output == "latent":
            return latents
        lambda_rho = float(self.config.lambda_rho if lambda_rho is None else lambda_rho)
        graphs = self.graphs  # read once: a live window change may swap it on another thread
        if graphs is not None and latents.shape[0] == 1 and onehot is not None:
            images, pixels = graphs.render(latents, onehot, degraded, lambda_rho, beside)
            if output == "uint8":
                return pixels
        else:
            images = self.model.render(latents, onehot, degraded, lambda_rho=lambda_rho)
        if output == "float":
            return images.float()
        if output == "uint8":
            return _to_uint8(images)
        raise ValueError(f"output must be 'uint8', 'float' or 'latent', got {output!r}")

    # -- the masked full-clip computation ----------------------------------------------------------
    @torch.inference_mode()
    def generate_clip(self, labels_seq, lowres_seq=None, seeds=None, output: str = "uint8",
                      temporal: str = "causal"):
        """All frames at once, without cache, through the masked temporal attention.

        labels_seq: [F, H, W]; lowres_seq: [F, H/4, W/4, 3] uint8 or None; seeds: F ints
        (default 0..F-1, the same default as streaming from reset()). Returns [F, H, W, 3] uint8
        (or [F, 3, H, W] floats / latents).
        """
        model, cfg = self.model, self.config
        labels_seq = np.asarray(labels_seq) if not isinstance(labels_seq, (np.ndarray, torch.Tensor)) else labels_seq
        frames = int(labels_seq.shape[0]) if labels_seq.ndim >= 1 else 0
        if frames < 1:
            raise ValueError("generate_clip needs at least one frame")
        self._check_labels_shape(labels_seq, frames)
        seeds = list(range(frames)) if seeds is None else [int(s) for s in seeds]
        if len(seeds) != frames:
            raise ValueError(f"{len(seeds)} seeds for {frames} frames")
        if cfg.noise == "shared":
            seeds = seeds[:1] * frames
        if lowres_seq is not None and len(lowres_seq) != frames:
            raise ValueError(f"{len(lowres_seq)} degraded frames for {frames} label maps")
        mode = model._temporal_mode(temporal)
        cond, embedded, onehot = self._condition(labels_seq)
        deg0, small = self._lowres_latents(lowres_seq) if lowres_seq is not None else (None, None)
        noise = torch.stack([self.frame_noise(s) for s in seeds])  # [F, T+1, C, h, w]
        t_steps = model.timesteps()
        steps = len(t_steps)
        start = cfg.start_step
        if start and deg0 is None:
            raise ValueError(f"strength {cfg.strength} < 1 starts from the degraded frames: pass lowres_seq")
        x = noise[:, 0] if start == 0 else model.add_noise(deg0, t_steps[start], noise[:, 0])
        if mode in ("bidirectional", "block") and model.temporal is not None and frames > model.temporal.max_frames:
            raise ValueError(f"{mode} attention over {frames} frames exceeds the adapter's "
                             f"{model.temporal.max_frames} positions")
        for s in range(start, steps):
            t = t_steps[s]
            tt = torch.full((frames,), t, device=self.device, dtype=torch.long)
            deg = model.degraded_input(deg0, tt, noise[:, steps]) if deg0 is not None else None
            run = None if mode == "off" else TemporalRun(mode=mode, frames=frames, lambda_t=float(cfg.lambda_t),
                                                         window=cfg.window)
            eps = model.denoise_rows(x, tt, cond, deg, float(cfg.lambda_c), float(cfg.lambda_r), run, embedded)
            x = model.lcm_step(s, t_steps, x, eps, noise[:, s + 1] if s + 1 < steps else None)
        return self._output(x, output, onehot, small)
