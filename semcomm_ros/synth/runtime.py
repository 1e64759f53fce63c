"""The graph runtime: a frame's networks exported to ONNX and run by ONNX Runtime.

At the shipped model's sizes (16x16 latents, 32-64 channels) eager PyTorch spends most of a frame
in per-operator overhead; the same networks as ONNX graphs run faster on the same cores
(docs/synth.md, "Runtime"). ``CausalSynthesizer`` keeps the frame's glue (seeds and noise, strength,
the LCM updates) in one place for both runtimes and hands the networks to ``FrameGraphs``:

| graph | inputs | outputs |
|---|---|---|
| ``condition`` | label map (int64 [1, H, W]) | psi's conditioning embedding, one-hot map |
| ``encoder`` | degraded frame (uint8 [1, h, w, 3]) | x~ = E(upsampled frame), the frame in [-1, 1] |
| ``denoiser`` | x_t, t, embedding, x~, lambda_C, lambda_R, lambda_T, KV cache, its fill | eps, KV cache |
| ``render`` | x_0, one-hot map, degraded frame, lambda_rho | D(x_0) refined by rho, in [-1, 1] |

One denoising call is the UNet with omega's rows and phi's motion modules plus psi: the streaming
path of ``SynthModel.denoise_rows``, traced. phi's KV cache is an explicit state of fixed shape
(``KVCache``, one per denoising step): W-1 slots of content keys/values at every motion-module
attention, of which the last ``fill`` hold frames (a stream's first W-1 frames see fewer; empty
slots get no attention weight: ``temporal_adapter._fixed_cache_attention``), so one graph serves
the whole stream. lambda_C, lambda_R, lambda_T and lambda_rho are
graph inputs, so they stay live. A module switched off by a lambda of 0 is multiplied by 0 in the
graph instead of skipped (same result; the torch runtime also skips the work and, for lambda_T = 0,
the cache update).

Graphs are exported once per model (the TorchScript exporter, a few seconds) into the user's cache
directory (``$SEMCOMM_CACHE_DIR`` or ``$XDG_CACHE_HOME/semcomm_ros``, default ``~/.cache/semcomm_ros``)
under a key of the weights' hash, the model's shape and the exporter's version, so a read-only model
directory works and a retrained model exports anew.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from semcomm_ros.cache import cache_dir

from .config import RUNTIMES  # noqa: F401  (re-exported: the runtime's users look here)
from .runstate import TemporalRun
from .semantic_control import condition_embedding

log = logging.getLogger(__name__)

#: bump when the exported graphs change (invalidates every cached export)
EXPORT_VERSION = 6
OPSET = 18
_LAMBDAS = ("lambda_c", "lambda_r", "lambda_t")


class RuntimeUnavailable(RuntimeError):
    """The graph runtime cannot run this model here (the message says why)."""


def onnx_unavailable_reason(device: torch.device) -> str | None:
    """None when ONNX Runtime can run on ``device``; else why not, in one phrase."""
    try:
        import onnxruntime as ort  # deferred: optional dependency, and heavy
    except ImportError as exc:
        return f"onnxruntime is not installed ({exc})"
    provider = _provider(device)
    if provider not in ort.get_available_providers():
        return f"onnxruntime has no {provider} here (available: {', '.join(ort.get_available_providers())})"
    return None


def _provider(device: torch.device) -> str:
    return "CUDAExecutionProvider" if device.type == "cuda" else "CPUExecutionProvider"


def cache_root() -> Path:
    """Where exported graphs live: the user's cache folder (``semcomm_ros.cache``), ``onnx/``."""
    return cache_dir("onnx")


def model_key(model, dtype: torch.dtype) -> str:
    """Hash of everything an exported graph bakes in: weights, shapes, dtype, exporter versions."""
    h = hashlib.sha256()
    cfg = model.config.to_dict()
    for live in (*_LAMBDAS, "lambda_rho", "strength", "noise", "num_steps", "consistency", "consistency_objects",
                 "runtime"):
        cfg.pop(live, None)
    meta = {"export": EXPORT_VERSION, "opset": OPSET, "torch": torch.__version__, "dtype": str(dtype), "config": cfg,
            "timesteps": model.scheduler.config.get("num_train_timesteps")}
    h.update(json.dumps(meta, sort_keys=True).encode())
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:24]


@dataclass
class KVCache:
    """phi's KV cache at one denoising step: one [pixels, W-1, D] pair of content keys and values
    x_j W^K, x_j W^V per motion-module attention (graph order), preallocated; the last ``fill``
    slots hold the newest frames."""

    tensors: tuple[np.ndarray, ...]
    fill: int = 0

    @classmethod
    def empty(cls, shapes: list[tuple[int, int]], window: int, dtype) -> "KVCache":
        return cls(tuple(np.zeros((p, window - 1, d), dtype) for p, d in shapes))


@dataclass
class GraphSpec:
    """What ``export`` wrote beside the graphs: the window, the cache layout, the parts the model has."""

    key: str
    window: int
    cache_shapes: list[tuple[int, int]] = field(default_factory=list)  # (pixels, D) per cache tensor
    has_control: bool = True
    has_restoration: bool = True
    has_temporal: bool = True
    lowres: tuple[int, int] = (0, 0)

    def save(self, path: Path) -> None:
        (path / "spec.json").write_text(json.dumps(self.__dict__, indent=1))

    @classmethod
    def load(cls, path: Path) -> "GraphSpec":
        data = json.loads((path / "spec.json").read_text())
        data["cache_shapes"] = [tuple(s) for s in data["cache_shapes"]]
        data["lowres"] = tuple(data["lowres"])
        return cls(**data)


# -- the exported modules ---------------------------------------------------------------------------

class _Condition(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, labels):
        # one_hot's movedim exports a Transpose with a negative axis that ONNX Runtime rejects
        classes = torch.arange(self.model.config.num_classes, device=labels.device)
        onehot = (labels[:, None] == classes[None, :, None, None]).to(self.model.unet.dtype)
        if self.model.controlnet is None:
            return onehot, onehot
        return condition_embedding(self.model.controlnet, onehot), onehot


class _Encoder(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, lowres):
        return self.model.encode_degraded(lowres)


class _Denoiser(nn.Module):
    """The streaming denoiser call; the fixed-shape cache and its fill go in, the shifted cache out."""

    def __init__(self, model, keys):
        super().__init__()
        self.model, self.keys = model, keys

    def forward(self, x, t, cond, deg, lambda_c, lambda_r, lambda_t, fill, *cache):
        cfg = self.model.config
        run = TemporalRun(mode="sliding", frames=1, lambda_t=lambda_t, window=cfg.window, tables={},
                          cache={key: (cache[2 * i], cache[2 * i + 1]) for i, key in enumerate(self.keys)},
                          fill=fill)
        eps = self.model.denoise_rows(x, t, cond, deg, lambda_c, lambda_r, run, self.model.controlnet is not None)
        return (eps, *[c for key in self.keys for c in run.cache[key]])


class _Render(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, latents, onehot, degraded, lambda_rho):
        images = self.model.render(latents, onehot, degraded, lambda_rho=lambda_rho)
        # the uint8 frame too: a 128x128 round trip through eager ops costs more than the graph's tail
        pixels = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)
        return images, pixels


def _scalar(value: float = 0.5) -> torch.Tensor:
    # non-zero at export: a 0 would let the tracer drop the module it switches off
    return torch.tensor(float(value), dtype=torch.float32)


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings on shape checks that are constant per graph
        torch.onnx.export(module, args, str(path), opset_version=OPSET, dynamo=False, input_names=inputs,
                          output_names=outputs, do_constant_folding=True)


@torch.inference_mode(False)
@torch.no_grad()
def export(model, device: torch.device, dtype: torch.dtype, out: Path, key: str) -> GraphSpec:
    """Trace the frame's networks of ``model`` (already on ``device``/``dtype``) into ``out``."""
    cfg = model.config
    spec = GraphSpec(key=key, window=cfg.window, has_control=model.controlnet is not None,
                     has_restoration=model.restoration is not None, has_temporal=model.temporal is not None,
                     lowres=tuple(cfg.lowres_size))
    h, w = cfg.lowres_size
    labels = torch.zeros(1, cfg.height, cfg.width, dtype=torch.long, device=device)
    labels[:, : cfg.height // 2] = min(1, cfg.num_classes - 1)
    lowres = torch.full((1, h, w, 3), 128, dtype=torch.uint8, device=device)
    _export(_Condition(model), (labels,), out / "condition.onnx", ["labels"], ["embedding", "onehot"])
    _export(_Encoder(model), (lowres,), out / "encoder.onnx", ["lowres"], ["latents", "degraded"])
    cond, onehot = _Condition(model)(labels)
    deg0, small = _Encoder(model)(lowres)
    x = torch.randn(deg0.shape, device=device).to(dtype)
    t = torch.full((1,), int(model.timesteps()[0]), dtype=torch.long, device=device)
    lam = (_scalar(cfg.lambda_c or 0.5), _scalar(cfg.lambda_r or 0.5), _scalar(cfg.lambda_t or 0.5))
    # the cache's layout comes from one eager call: every motion-module attention leaves one entry
    probe = TemporalRun(mode="sliding", frames=1, lambda_t=lam[2], window=cfg.window, cache={}, tables={})
    deg = deg0 if spec.has_restoration else None
    model.denoise_rows(x, t, cond, deg, lam[0], lam[1], probe, spec.has_control)
    keys = list(probe.cache)
    spec.cache_shapes = [(int(c.shape[0]), int(c.shape[2])) for key in keys for c in probe.cache[key]]
    names = ["x", "t", "condition", "degraded", *_LAMBDAS, "fill"]
    # a fill below W-1 at export: a full cache would let the tracer fold the empty slots' mask away
    fill = torch.tensor(max(cfg.window - 2, 0), dtype=torch.long, device=device)
    cache = [torch.randn(p, cfg.window - 1, d, device=device).to(dtype) for p, d in spec.cache_shapes]
    cache_in = [f"cache_{i}" for i in range(len(cache))]
    cache_out = [f"cache_out_{i}" for i in range(len(cache))]
    module, args = _Denoiser(model, keys), (x, t, cond, deg, *lam, fill, *cache)
    if not spec.has_restoration:
        names.remove("degraded")
        module, args = _NoDegraded(module), (x, t, cond, *lam, fill, *cache)
    _export(module, args, out / "denoiser.onnx", names + cache_in, ["eps", *cache_out])
    _export(_Render(model), (x, onehot, small, _scalar(cfg.lambda_rho or 0.5)), out / "render.onnx",
            ["latents", "onehot", "degraded", "lambda_rho"], ["images", "pixels"])
    spec.save(out)
    return spec


class _NoDegraded(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x, t, cond, *rest):
        return self.inner(x, t, cond, None, *rest)


# -- running them ------------------------------------------------------------------------------------

class _Session:
    """An InferenceSession fed by name: inputs a graph does not read (the exporter drops them, e.g.
    the one-hot map of a render without rho) are left out."""

    def __init__(self, session):
        self.session = session
        self.inputs = {i.name for i in session.get_inputs()}

    def run(self, feeds: dict) -> list[np.ndarray]:
        return self.session.run(None, {k: v for k, v in feeds.items() if k in self.inputs})


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


class FrameGraphs:
    """ONNX Runtime sessions for one model's frame, and the KV cache state of a stream."""

    def __init__(self, path: Path, spec: GraphSpec, device: torch.device, dtype: torch.dtype, steps: int,
                 threads: int | None = None):
        import onnxruntime as ort  # deferred: optional dependency, and heavy

        self.path, self.spec, self.device, self.dtype = path, spec, device, dtype
        providers = [_provider(device)]
        threads = int(threads or torch.get_num_threads())

        def session(name, intra_threads):
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = intra_threads
            opts.inter_op_num_threads = 1
            opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opts.log_severity_level = 3
            # idle workers spinning between the frame's graph calls take the cores from the glue and
            # from the other graphs (measured: a frame 1.5-2x slower with spinning on 2 cores)
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            return _Session(ort.InferenceSession(str(path / f"{name}.onnx"), opts, providers=providers))

        self._session = session
        self.condition_session = session("condition", threads)
        self.encoder_session = session("encoder", threads)
        self.render_session = session("render", threads)
        self._render_beside = None
        # the denoiser's ~1900 operators are too small to split: on one thread they skip the workers'
        # hand-offs (measured on 2 cores: 14.5 ms a call against 16-18 on two)
        self.denoiser = session("denoiser", 1)
        self._np_dtype = np.float16 if dtype == torch.float16 else np.float32
        self.reset(steps)

    @classmethod
    def load(cls, model, device: torch.device, dtype: torch.dtype, cache_dir: Path | None = None) -> "FrameGraphs":
        """The model's graphs from the cache, exported first when missing. Raises RuntimeUnavailable."""
        reason = onnx_unavailable_reason(device)
        if reason:
            raise RuntimeUnavailable(reason)
        key = model_key(model, dtype)
        root = Path(cache_dir) if cache_dir is not None else cache_root()
        path = root / key
        if (path / "spec.json").is_file():
            try:
                return cls(path, GraphSpec.load(path), device, dtype, model.config.num_steps)
            except Exception as exc:  # a cache damaged on disk: export again
                log.warning("cached ONNX graphs in %s are unusable (%s): exporting again", path, exc)
                shutil.rmtree(path, ignore_errors=True)
        path = _export_into(model, device, dtype, root, key)
        return cls(path, GraphSpec.load(path), device, dtype, model.config.num_steps)

    def reset(self, steps: int) -> None:
        """A new stream of T = ``steps`` denoising steps: every step's cache empty."""
        self.caches = [KVCache.empty(self.spec.cache_shapes, self.spec.window, self._np_dtype) for _ in range(steps)]

    def _tensor(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).to(self.device)

    def condition(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb, onehot = self.condition_session.run({"labels": _numpy(labels.long())})
        return self._tensor(emb), self._tensor(onehot)

    def encode(self, lowres: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        latents, small = self.encoder_session.run({"lowres": np.ascontiguousarray(lowres)})
        return self._tensor(latents), self._tensor(small)

    def denoise(self, step: int, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, deg: torch.Tensor | None,
                lambdas: tuple[float, float, float]) -> torch.Tensor:
        spec, cache = self.spec, self.caches[step]
        feeds = {"x": _numpy(x), "t": _numpy(t), "condition": _numpy(cond)}
        lambda_r = lambdas[1]
        if spec.has_restoration:
            if deg is None:  # no degraded frame for this one: omega's rows weighted 0
                deg, lambda_r = torch.zeros_like(x), 0.0
            feeds["degraded"] = _numpy(deg)
        for name, value in zip(_LAMBDAS, (lambdas[0], lambda_r, lambdas[2])):
            feeds[name] = np.asarray(value, np.float32)
        feeds["fill"] = np.asarray(cache.fill, np.int64)
        for i, c in enumerate(cache.tensors):
            feeds[f"cache_{i}"] = c
        out = self.denoiser.run(feeds)
        if spec.has_temporal:
            self.caches[step] = KVCache(tuple(out[1:]), min(cache.fill + 1, spec.window - 1))
        return self._tensor(out[0])

    def render(self, latents: torch.Tensor, onehot: torch.Tensor, degraded: torch.Tensor | None,
               lambda_rho: float, beside: bool = False) -> tuple[torch.Tensor, np.ndarray]:
        """The frame in [-1, 1] [N, 3, H, W] and as uint8 [N, H, W, 3]. beside: on one thread, for a
        render on a second thread while the denoiser holds the other core (two threads there would
        take turns with the denoiser's: measured 13.0 against 14.1 FPS at 512x512 on 2 cores)."""
        if degraded is None:  # none received yet: zeros, as SynthModel.render
            degraded = torch.zeros((latents.shape[0], 3, *self.spec.lowres), dtype=latents.dtype)
        session = self.render_session
        if beside:
            if self._render_beside is None:  # a benign race: two threads would each build one
                self._render_beside = self._session("render", 1)
            session = self._render_beside
        images, pixels = session.run({"latents": _numpy(latents), "onehot": _numpy(onehot),
                                      "degraded": _numpy(degraded),
                                      "lambda_rho": np.asarray(lambda_rho, np.float32)})
        return self._tensor(images), pixels


def _export_into(model, device, dtype, root: Path, key: str) -> Path:
    """Export into ``root/key`` atomically (a temporary folder renamed), or into a temporary folder
    of this process when ``root`` is not writable."""
    t0 = time.perf_counter()
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
    except OSError as exc:
        tmp = Path(tempfile.mkdtemp(prefix=f"semcomm-onnx-{key}-"))
        log.warning("cache directory %s is not writable (%s): exporting into %s for this process", root, exc, tmp)
        root = None
    log.info("exporting the synthesizer's graphs to ONNX (once per model, a few seconds)")
    try:
        export(model, device, dtype, tmp, key)
    except Exception:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("exported in %.1f s", time.perf_counter() - t0)
    if root is None:
        return tmp
    final = root / key
    try:
        os.replace(tmp, final)
    except OSError:  # another process exported the same model meanwhile: use its graphs
        shutil.rmtree(tmp, ignore_errors=True)
    return final
