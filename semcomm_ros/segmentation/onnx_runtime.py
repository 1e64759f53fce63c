"""The ``onnx`` runtime of the ultralytics segmenter: the YOLO weights exported to ONNX by ultralytics'
own exporter, run by ONNX Runtime, with ultralytics' own pre- and post-processing around it.

Export, once per weights file: a dynamic-shape graph (one export serves every inference size and
frame shape, and the letterbox is the torch runtime's, so both see the same input tensor), into
``semcomm_ros.cache.cache_dir("yolo")`` under a key of the weights' SHA-256 and the export settings
(``EXPORT_ARGS``, ``EXPORT_VERSION``), written to a temporary file and renamed into place, so that a
read-only weights folder works and an interrupted export leaves nothing half-written. ``seg-train``
writes the same graph beside the ``.pt`` it produces (``weights.with_suffix(".onnx")``); a graph
there is used when the key it records (ONNX metadata ``semcomm_export_key``) matches the weights.

Nothing is installed or downloaded: ``simplify=False`` keeps the exporter from requiring onnxslim
and onnxruntime (whose missing packages it would try to pip-install), ``onnx`` is the only package
it checks for, and ``import_ultralytics`` switches ultralytics' AutoUpdate off besides.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..cache import cache_dir
from .offline import import_ultralytics

log = logging.getLogger(__name__)

RUNTIMES = ("onnx", "torch")
#: bump when what is exported (or how the graph's outputs are read) changes: invalidates every cached export
EXPORT_VERSION = 1
#: opset pinned rather than left to the exporter, so that a newer exporter cannot change a graph under the same key
EXPORT_ARGS = {"format": "onnx", "dynamic": True, "simplify": False, "half": False, "nms": False, "opset": 18,
               "imgsz": 384}
KEY_PROP = "semcomm_export_key"


class RuntimeUnavailable(RuntimeError):
    """The onnx runtime cannot run these weights here (the message says why)."""


def cuda_index(device: str) -> int | None:
    """The CUDA device index ``device`` names ("cuda", "cuda:1", "0"), or None for anything else."""
    device = str(device).strip().lower()
    if device == "cuda":
        return 0
    if device.startswith("cuda:") and device[5:].isdigit():
        return int(device[5:])
    return int(device) if device.isdigit() else None


def unavailable_reason(device: str = "cpu") -> str | None:
    """None when ONNX Runtime can run on ``device`` here; else why not, in one phrase."""
    try:
        import onnxruntime as ort  # deferred: optional dependency, and heavy
    except ImportError as exc:
        return f"onnxruntime is not importable ({exc})"
    if str(device).lower() == "cpu":
        provider = "CPUExecutionProvider"
    elif cuda_index(device) is not None:
        provider = "CUDAExecutionProvider"
    else:
        return f"no ONNX Runtime execution provider for device {device!r}"
    available = ort.get_available_providers()
    if provider not in available:
        return f"onnxruntime has no {provider} here (available: {', '.join(available)})"
    return None


def weights_sha256(weights: str | Path) -> str:
    h = hashlib.sha256()
    with open(weights, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def export_key(weights: str | Path) -> str:
    """What an export of ``weights`` bakes in: the weights' bytes and the export settings."""
    meta = {"weights": weights_sha256(weights), "args": EXPORT_ARGS, "export": EXPORT_VERSION}
    return hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:20]


def cached_path(weights: str | Path, key: str | None = None) -> Path:
    """Where the export of ``weights`` lives in the user's cache."""
    weights = Path(weights)
    return cache_dir("yolo") / f"{weights.stem}-{key or export_key(weights)}.onnx"


@contextmanager
def torch_threads(n: int | None):
    """Run a block with ``n`` torch threads (None: unchanged), then put the count back."""
    import torch  # deferred: heavy, and only needed around ultralytics calls

    before = torch.get_num_threads()
    if n and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def export_onnx(weights: str | Path, dest: str | Path, key: str | None = None) -> Path:
    """Export ``weights`` with ultralytics' exporter to ``dest`` (temporary file, then rename).

    The exporter writes beside the ``.pt`` it is given, so it gets a copy in a temporary folder next
    to ``dest``: the weights' own folder may be read-only, and the rename stays on one filesystem.
    """
    weights, dest = Path(weights), Path(dest)
    key = key or export_key(weights)
    import_ultralytics()
    import onnx  # deferred: optional, only needed to export
    from ultralytics import YOLO  # deferred: import_ultralytics() configures ultralytics offline first

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=dest.parent))
    try:
        pt = tmp / (weights.stem + ".pt")
        shutil.copyfile(weights, pt)
        # the exporter's select_device resets torch's thread count: keep the caller's; and its choice of
        # torch's TorchScript-based exporter is not the caller's to act on: no DeprecationWarnings
        with torch_threads(None), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            out = YOLO(str(pt), task="segment").export(**EXPORT_ARGS, device="cpu", verbose=False)
        model = onnx.load(str(out))
        model.metadata_props.add(key=KEY_PROP, value=key)
        part = tmp / "graph.onnx"
        onnx.save(model, str(part))
        os.replace(part, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


class OnnxYolo:
    """An exported YOLO-seg graph in an ONNX Runtime session, called like the torch predictor.

    ``threads`` is ONNX Runtime's intra-op thread count (None: its default, every core).
    """

    def __init__(self, path: str | Path, threads: int | None = 2, device: str = "cpu"):
        import onnxruntime as ort  # deferred: optional dependency, and heavy

        import_ultralytics()  # predict() uses ultralytics' pre- and post-processing
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        # spinning workers keep a core busy between operators: on cores shared with other processes
        # that doubled the wall time per frame (measured); the wake-up it saves is small here
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        index = cuda_index(device)
        providers = ["CPUExecutionProvider"]
        if index is not None:
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": index}))
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), opts, providers=providers)
        self.provider = self.session.get_providers()[0]
        meta = self.session.get_modelmeta().custom_metadata_map
        self.key = meta.get(KEY_PROP)
        self.names = {int(k): str(v) for k, v in ast.literal_eval(meta.get("names", "{}")).items()}
        self.stride = int(meta.get("stride", 32))
        self.end2end = meta.get("end2end", "False") == "True"
        self.input = self.session.get_inputs()[0].name

    def predict(self, rgb: np.ndarray, imgsz: int, conf: float, iou: float, max_det: int):
        """``(masks N x H x W bool, model classes N, scores N)`` at the input size, as the
        SegmentationPredictor makes them with ``retina_masks=True``."""
        import torch  # deferred: heavy; ultralytics' post-processing is torch
        from ultralytics.data.augment import LetterBox  # deferred: import_ultralytics() runs first (loader)
        from ultralytics.utils import nms, ops  # deferred: as above

        h, w = rgb.shape[:2]
        # auto: the smallest stride-multiple rectangle, as the torch predictor pads (graph is dynamic);
        # the letterbox is channel-agnostic, so RGB goes in as the predictor's BGR-flipped-to-RGB does
        img = LetterBox((imgsz, imgsz), auto=True, stride=self.stride)(image=rgb)
        x = np.ascontiguousarray(img.transpose(2, 0, 1)[None]).astype(np.float32)
        x /= 255
        out0, out1 = self.session.run(None, {self.input: x})
        # single-threaded: a few ms of mask upsampling, and torch's spinning OpenMP workers slowed the
        # whole frame down by a third on shared cores (measured)
        with torch_threads(1):
            pred = nms.non_max_suppression(torch.from_numpy(out0), conf, iou, None, False, max_det=max_det,
                                           nc=len(self.names), end2end=self.end2end)[0]
            if pred.shape[0] == 0:
                return np.zeros((0, h, w), bool), np.zeros(0, np.int64), np.zeros(0, np.float32)
            pred[:, :4] = ops.scale_boxes(x.shape[2:], pred[:, :4], (h, w))
            masks = ops.process_mask_native(torch.from_numpy(out1)[0], pred[:, 6:], pred[:, :4], (h, w))
            keep = masks.amax((-2, -1)) > 0  # the predictor drops detections whose mask is empty
            pred, masks = pred[keep], masks[keep]
        return masks.numpy() > 0, pred[:, 5].numpy().astype(np.int64), pred[:, 4].numpy().astype(np.float32)


def load_graph(weights: str | Path, threads: int | None = 2, device: str = "cpu") -> OnnxYolo:
    """The ONNX graph of ``weights`` in a session: beside the weights when its key matches, else
    from the cache, exported there first if need be. Raises ``RuntimeUnavailable`` saying why not."""
    reason = unavailable_reason(device)
    if reason:
        raise RuntimeUnavailable(reason)
    weights = Path(weights)
    key = export_key(weights)
    beside = weights.with_suffix(".onnx")
    if beside.is_file():
        try:
            graph = OnnxYolo(beside, threads, device)
            if graph.key == key:
                return graph
        except Exception as exc:  # an unreadable file beside the weights: the cache still serves
            log.debug("ignoring %s: %s", beside, exc)
    path = cached_path(weights, key)
    if not path.is_file():
        log.info("exporting %s to ONNX (once per weights file): %s", weights, path)
        try:
            export_onnx(weights, path, key)
        except Exception as exc:  # any failure leaves the torch runtime, which runs the same weights
            raise RuntimeUnavailable(f"the ONNX export of {weights} to {path} failed "
                                     f"({type(exc).__name__}: {exc})") from exc
    try:
        return OnnxYolo(path, threads, device)
    except Exception as exc:
        raise RuntimeUnavailable(f"ONNX Runtime cannot load {path} ({type(exc).__name__}: {exc})") from exc
