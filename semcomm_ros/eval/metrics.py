"""Metrics of the paper's evaluation (V-E): fidelity, perception, semantics, time, rate.

- ``psnr``, ``ms_ssim``: frame-level fidelity (uint8 RGB, data range 255).
- ``miou`` / ``segmentation_miou``: semantic fidelity, the mIoU between the segmentation of the
  synthesized frames and the ground truth (labels, or the same segmenter on the real frames);
  ``class_iou`` the IoU of each class. The codec and segmentation benchmarks score one frame at
  a time with ``miou`` and average over frames.
- ``flicker``: a warping-free temporal-consistency measure,
  mean |(s_k - s_{k-1}) - (g_k - g_{k-1})| over frames k >= 1 and all pixels, in 0..255 units.
- ``bits``, ``kbps``, ``bpp``: rate. 1 kbps = 1024 bit/s as in the paper
  (bpp = kbps * 1024 / (H * W * fps), e.g. 1 kbps at 512x512, 10 fps = 0.0003 bpp).
- ``lpips``, ``dists``: perceptual metrics, computed only from backbone + metric weights at a
  local path (argument or environment variable). Nothing is ever downloaded: without the weights
  they return ``(None, reason)`` and callers print the reason instead of a number.

Arrays: an image is HxWx3 (or HxW); a video is a stack NxHxWx3. Video scores are the mean of the
per-frame scores.
"""

from __future__ import annotations

import math
import os
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np

from semcomm_ros.codec.packet import frame_bits

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003
_WIN, _SIGMA, _K1, _K2 = 11, 1.5, 0.01, 0.03


def _pair(pred, ref) -> tuple[np.ndarray, np.ndarray]:
    pred, ref = np.asarray(pred), np.asarray(ref)
    if pred.shape != ref.shape:
        raise ValueError(f"shape mismatch: prediction {pred.shape} vs reference {ref.shape}")
    if pred.size == 0:
        raise ValueError("empty images")
    return pred.astype(np.float64), ref.astype(np.float64)


def _is_video(x: np.ndarray) -> bool:
    return x.ndim == 4 or (x.ndim == 3 and x.shape[-1] not in (1, 3))


# -- fidelity -------------------------------------------------------------------------------
def psnr(pred, ref, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB; ``inf`` for identical images; video: mean over frames."""
    p, r = _pair(pred, ref)
    if _is_video(p):
        return float(np.mean([psnr(a, b, data_range) for a, b in zip(p, r)]))
    mse = float(np.mean((p - r) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / mse)


def _gauss_valid(x: np.ndarray) -> np.ndarray:
    """11-tap Gaussian (sigma 1.5) filtering, 'valid' part only (no border padding)."""
    g = cv2.getGaussianKernel(_WIN, _SIGMA, cv2.CV_32F)
    out = cv2.sepFilter2D(x, cv2.CV_32F, g, g, borderType=cv2.BORDER_REFLECT)
    out = out.reshape(x.shape)  # OpenCV drops a trailing channel axis of 1
    h = _WIN // 2
    return out[h:x.shape[0] - h, h:x.shape[1] - h]


def _ssim_terms(x: np.ndarray, y: np.ndarray, data_range: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean SSIM and mean contrast-structure term per channel of HxWxC planes."""
    c1, c2 = (_K1 * data_range) ** 2, (_K2 * data_range) ** 2
    mx, my = _gauss_valid(x), _gauss_valid(y)
    sxx = _gauss_valid(x * x) - mx * mx
    syy = _gauss_valid(y * y) - my * my
    sxy = _gauss_valid(x * y) - mx * my
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    lum = (2 * mx * my + c1) / (mx * mx + my * my + c1)
    return (np.array(cv2.mean(lum * cs)[:x.shape[-1]], dtype=np.float64),
            np.array(cv2.mean(cs)[:x.shape[-1]], dtype=np.float64))


def ms_ssim_scales(height: int, width: int) -> int:
    """Scales used for an image of this size: 5 when the coarsest (1/16) is >= 11 px.

    Images under 176 px (the 11-px window at 1/16 scale) get as many scales as fit, with the
    standard weights of those scales renormalized to sum to 1 (e.g. 128x128: 4 scales); under
    11 px there is no valid window and ``ms_ssim`` raises ValueError.
    """
    n, h, w = 0, height, width
    while n < len(MS_SSIM_WEIGHTS) and min(h, w) >= _WIN:
        n += 1
        h, w = h // 2, w // 2
    return n


def _half(x: np.ndarray) -> np.ndarray:
    """2x2 average pooling (an odd last row/column is dropped)."""
    h, w = (x.shape[0] // 2) * 2, (x.shape[1] // 2) * 2
    out = cv2.resize(x[:h, :w], (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    return out.reshape(h // 2, w // 2, x.shape[-1])


def _ms_ssim_planes(x: np.ndarray, y: np.ndarray, data_range: float) -> np.ndarray:
    """MS-SSIM of each channel of HxWxC arrays (C <= 4: OpenCV filters channels together)."""
    n = ms_ssim_scales(*x.shape[:2])
    if n == 0:
        raise ValueError(f"image {x.shape[1]}x{x.shape[0]} is smaller than the 11-px SSIM window")
    weights = np.array(MS_SSIM_WEIGHTS[:n])
    weights = weights / weights.sum()
    values = []
    for j in range(n):
        ssim, cs = _ssim_terms(x, y, data_range)
        # negative contrast-structure (anti-correlated content) would make the product
        # undefined for fractional powers: clamp at 0 like the reference implementations
        values.append(np.maximum(ssim if j == n - 1 else cs, 0.0))
        if j < n - 1:
            x, y = _half(x), _half(y)
    return np.prod(np.power(np.array(values), weights[:, None]), axis=0)


def ms_ssim(pred, ref, data_range: float = 255.0) -> float:
    """Multi-scale SSIM (Wang, Simoncelli, Bovik 2003): 5 scales, weights 0.0448..0.1333.

    Gaussian 11x11 window (sigma 1.5), K1 0.01, K2 0.03, 2x2 average pooling between scales,
    computed per RGB channel and averaged; 1.0 for identical images; video: mean over frames.
    Smaller images: see ``ms_ssim_scales``.
    """
    p, r = _pair(pred, ref)
    if _is_video(p):
        return float(np.mean([ms_ssim(a, b, data_range) for a, b in zip(p, r)]))
    if p.ndim == 2:
        p, r = p[..., None], r[..., None]
    # float32 is 3x faster and exact enough: errors ~1e-2 against C2 = 58.5 for 8-bit data
    return float(np.mean(_ms_ssim_planes(p.astype(np.float32), r.astype(np.float32),
                                         data_range)))


# -- semantics ------------------------------------------------------------------------------
def confusion(pred_labels, gt_labels, num_classes: int | None = None,
              ignore_index: int | None = None) -> np.ndarray:
    """Class confusion matrix (rows: ground truth, columns: prediction) over all pixels given."""
    p, g = np.asarray(pred_labels), np.asarray(gt_labels)
    if p.shape != g.shape:
        raise ValueError(f"label shape mismatch: {p.shape} vs {g.shape}")
    p, g = p.astype(np.int64).ravel(), g.astype(np.int64).ravel()
    if ignore_index is not None:
        keep = g != ignore_index
        p, g = p[keep], g[keep]
    if p.size and (p.min() < 0 or g.min() < 0):
        raise ValueError("labels must be non-negative")
    n = int(num_classes) if num_classes else int(max(p.max(initial=0), g.max(initial=0))) + 1
    if p.size and max(p.max(), g.max()) >= n:
        raise ValueError(f"label {max(p.max(), g.max())} outside num_classes={n}")
    return np.bincount(g * n + p, minlength=n * n).reshape(n, n)


def miou_from_confusion(conf: np.ndarray) -> float:
    inter = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - inter
    present = union > 0
    if not present.any():
        raise ValueError("no labelled pixels")
    return float(np.mean(inter[present] / union[present]))


def class_iou(pred_labels, gt_labels, num_classes: int | None = None,
              ignore_index: int | None = None) -> dict[int, float]:
    """IoU of every class present in prediction or ground truth (pixels of all frames pooled)."""
    conf = confusion(pred_labels, gt_labels, num_classes, ignore_index)
    inter = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - inter
    return {int(c): float(inter[c] / union[c]) for c in np.flatnonzero(union > 0)}


def miou(pred_labels, gt_labels, num_classes: int | None = None,
         ignore_index: int | None = None) -> float:
    """Mean IoU over the classes present in prediction or ground truth (pixels of all frames
    pooled, as in dataset-level mIoU); classes absent from both are not averaged."""
    return miou_from_confusion(confusion(pred_labels, gt_labels, num_classes, ignore_index))


def segmentation_miou(segment: Callable[[np.ndarray], np.ndarray], frames: Iterable,
                      reference_frames: Iterable | None = None,
                      reference_labels: Iterable | None = None,
                      num_classes: int | None = None) -> float:
    """mIoU of ``segment(frame)`` on synthesized frames against the reference.

    The reference is either ``reference_labels`` (exact labels of generated scenes) or, as in the
    paper, ``segment`` applied to the ground-truth ``reference_frames``.
    """
    if (reference_frames is None) == (reference_labels is None):
        raise ValueError("give exactly one of reference_frames or reference_labels")
    refs = reference_labels if reference_labels is not None else (
        segment(f) for f in reference_frames)
    conf = None
    count = 0
    for frame, ref in zip(frames, refs, strict=True):
        c = confusion(segment(frame), ref, num_classes)
        if conf is not None and c.shape != conf.shape:
            n = max(c.shape[0], conf.shape[0])
            c, conf = _grow(c, n), _grow(conf, n)
        conf = c if conf is None else conf + c
        count += 1
    if not count:
        raise ValueError("no frames")
    return miou_from_confusion(conf)


def _grow(conf: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((n, n), dtype=conf.dtype)
    out[:conf.shape[0], :conf.shape[1]] = conf
    return out


# -- time -----------------------------------------------------------------------------------
def flicker(frames, reference) -> float:
    """Warping-free flicker: mean |(s_k - s_{k-1}) - (g_k - g_{k-1})| in intensity units.

    0 when the synthesized video changes exactly as the real one does (e.g. a constant offset
    or a static error); grows with frame-to-frame changes that the real video does not have.
    """
    s, g = _pair(frames, reference)
    if s.ndim < 3 or s.shape[0] < 2:
        raise ValueError("flicker needs at least two frames (N x H x W [x C])")
    return float(np.mean(np.abs(np.diff(s, axis=0) - np.diff(g, axis=0))))


# -- rate -----------------------------------------------------------------------------------
def bits(packets: Iterable[bytes]) -> int:
    """Total bits of a sequence of packets."""
    return sum(frame_bits(p) for p in packets)


def kbps(total_bits: float, frames: int, fps: float) -> float:
    """Average rate in kbps (1 kbps = 1024 bit/s) of ``total_bits`` over ``frames`` at ``fps``."""
    if frames <= 0 or fps <= 0:
        raise ValueError("frames and fps must be positive")
    return total_bits * fps / frames / 1024.0


def bpp(rate_kbps: float, height: int, width: int, fps: float) -> float:
    """Bits per pixel: kbps * 1024 / (H * W * fps)."""
    return rate_kbps * 1024.0 / (height * width * fps)


def window_kbps(frame_bits: Sequence[int], fps: float, window_s: float = 10.0) -> np.ndarray:
    """Rate of every sliding window of ``window_s`` seconds (one per start frame)."""
    b = np.asarray(frame_bits, dtype=np.float64)
    n = int(round(window_s * fps))
    if len(b) < n:
        return np.array([kbps(b.sum(), max(len(b), 1), fps)])
    c = np.concatenate([[0.0], np.cumsum(b)])
    return (c[n:] - c[:-n]) * fps / n / 1024.0


# -- perception (local weights only) ---------------------------------------------------------
_LPIPS_LAYERS = {  # torchvision feature-slice ends and channels per tapped ReLU
    "alex": ((2, 5, 8, 10, 12), (64, 192, 384, 256, 256)),
    "vgg": ((4, 9, 16, 23, 30), (64, 128, 256, 512, 512)),
}


def _load_state(path: str):
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return state


def _features(net: str, path: str):
    """The convolutional part of torchvision's alexnet/vgg16 with weights from ``path``: a full
    torchvision state dict (``features.*`` keys used) or one of the features alone."""
    from torch import nn
    from torchvision.models.vgg import cfgs, make_layers

    if net == "alex":  # torchvision.models.AlexNet.features, without building its classifier
        feats = nn.Sequential(
            nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(True), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(True), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(True), nn.MaxPool2d(3, 2))
    else:
        feats = make_layers(cfgs["D"])
    state = _load_state(path)
    if any(k.startswith("features.") for k in state):
        state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    feats.load_state_dict(state)
    return feats.eval()


def _missing(name: str, what: dict[str, str | None]) -> str | None:
    gaps = [f"{k} (argument or ${env})" for k, (v, env) in what.items() if not v]
    if gaps:
        return f"{name} not available: no local weights given for " + ", ".join(gaps)
    absent = [v for v, _ in what.values() if not os.path.isfile(v)]
    if absent:
        return f"{name} not available: weight file(s) not found: " + ", ".join(absent)
    return None


def _to_tensor(x: np.ndarray):
    import torch

    x = np.asarray(x)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected RGB image(s) HxWx3 or NxHxWx3, got {x.shape}")
    return torch.from_numpy(x.astype(np.float32) / 255.0).permute(0, 3, 1, 2).contiguous()


def lpips(pred, ref, net: str = "alex", backbone: str | None = None,
          lin: str | None = None) -> tuple[float | None, str | None]:
    """LPIPS (Zhang et al. 2018) from local weights; ``(value, None)`` or ``(None, reason)``.

    ``backbone``: a torchvision ``alexnet``/``vgg16`` state dict (.pth, whole model or its
    ``features`` alone), default
    ``$SEMCOMM_LPIPS_BACKBONE``; ``lin``: the LPIPS v0.1 linear-layer weights of that net
    (``alex.pth``/``vgg.pth``, keys ``lin{k}.model.1.weight``), default ``$SEMCOMM_LPIPS_LIN``.
    Video: mean over frames. Lower is better.
    """
    if net not in _LPIPS_LAYERS:
        raise ValueError(f"net must be one of {sorted(_LPIPS_LAYERS)}")
    backbone = backbone or os.environ.get("SEMCOMM_LPIPS_BACKBONE")
    lin = lin or os.environ.get("SEMCOMM_LPIPS_LIN")
    reason = _missing("LPIPS", {"backbone": (backbone, "SEMCOMM_LPIPS_BACKBONE"),
                                "lin": (lin, "SEMCOMM_LPIPS_LIN")})
    if reason:
        return None, reason
    import torch

    _pair(pred, ref)
    try:
        feats = _features(net, backbone)
        lin_state = _load_state(lin)
        ends, chans = _LPIPS_LAYERS[net]
        lins = [lin_state[f"lin{k}.model.1.weight"].reshape(1, c, 1, 1)
                for k, c in enumerate(chans)]
    except (RuntimeError, KeyError, OSError, ValueError) as exc:
        return None, f"LPIPS not available: weights do not load ({exc})"
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    out = []
    with torch.no_grad():
        for a, b in _frames(pred, ref):
            x, y = [(2 * _to_tensor(v) - 1 - shift) / scale for v in (a, b)]
            total, start = 0.0, 0
            for end, w in zip(ends, lins):
                for layer in feats[start:end]:
                    x, y = layer(x), layer(y)
                start = end
                nx = x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                ny = y / (y.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                total += float(((nx - ny) ** 2 * w).sum(1).mean())
            out.append(total)
    return float(np.mean(out)), None


def _frames(pred, ref):
    p, r = np.asarray(pred), np.asarray(ref)
    if p.ndim == 4:
        return list(zip(p, r))
    return [(p, r)]


def dists(pred, ref, backbone: str | None = None,
          weights: str | None = None) -> tuple[float | None, str | None]:
    """DISTS (Ding et al. 2020) from local weights; ``(value, None)`` or ``(None, reason)``.

    ``backbone``: a torchvision ``vgg16`` state dict, default ``$SEMCOMM_DISTS_BACKBONE``;
    ``weights``: the DISTS ``alpha``/``beta`` tensors (the reference ``weights.pt``), default
    ``$SEMCOMM_DISTS_WEIGHTS``. Video: mean over frames. Lower is better.
    """
    backbone = backbone or os.environ.get("SEMCOMM_DISTS_BACKBONE")
    weights = weights or os.environ.get("SEMCOMM_DISTS_WEIGHTS")
    reason = _missing("DISTS", {"backbone": (backbone, "SEMCOMM_DISTS_BACKBONE"),
                                "weights": (weights, "SEMCOMM_DISTS_WEIGHTS")})
    if reason:
        return None, reason
    import torch
    import torch.nn.functional as F

    _pair(pred, ref)
    try:
        f = _features("vgg", backbone)
        ab = _load_state(weights)
        alpha, beta = ab["alpha"].reshape(-1), ab["beta"].reshape(-1)
    except (RuntimeError, KeyError, OSError, ValueError) as exc:
        return None, f"DISTS not available: weights do not load ({exc})"
    chans = (3, 64, 128, 256, 512, 512)
    if alpha.numel() != sum(chans) or beta.numel() != sum(chans):
        return None, f"DISTS not available: alpha/beta must have {sum(chans)} entries"
    # DISTS replaces VGG's max-pooling by L2 pooling with a 3x3 Hanning window
    han = torch.hann_window(5, periodic=False)[1:-1]
    win = han[:, None] * han[None, :]
    win = win / win.sum()

    def l2pool(x):
        c = x.shape[1]
        out = F.conv2d(x**2, win.expand(c, 1, 3, 3), stride=2, padding=1, groups=c)
        return (out + 1e-12).sqrt()

    stages = [f[0:4], f[5:9], f[10:16], f[17:23], f[24:30]]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    w_sum = alpha.sum() + beta.sum()
    al = torch.split(alpha / w_sum, list(chans))
    be = torch.split(beta / w_sum, list(chans))
    out = []
    with torch.no_grad():
        for a, b in _frames(pred, ref):
            xs, ys = [_to_tensor(a)], [_to_tensor(b)]
            x, y = (xs[0] - mean) / std, (ys[0] - mean) / std
            for i, stage in enumerate(stages):
                if i:
                    x, y = l2pool(x), l2pool(y)
                x, y = stage(x), stage(y)
                xs.append(x)
                ys.append(y)
            d1 = d2 = 0.0
            for k in range(len(chans)):
                fx, fy = xs[k], ys[k]
                mx, my = fx.mean([2, 3]), fy.mean([2, 3])
                s1 = (2 * mx * my + 1e-6) / (mx**2 + my**2 + 1e-6)
                vx = ((fx - mx[..., None, None]) ** 2).mean([2, 3])
                vy = ((fy - my[..., None, None]) ** 2).mean([2, 3])
                cov = (fx * fy).mean([2, 3]) - mx * my
                s2 = (2 * cov + 1e-6) / (vx + vy + 1e-6)
                d1 = d1 + float((al[k] * s1).sum())
                d2 = d2 + float((be[k] * s2).sum())
            out.append(1.0 - (d1 + d2))
    return float(np.mean(out)), None


def perceptual_status() -> dict[str, str]:
    """``{"lpips": "available" | reason, "dists": ...}`` from the environment's weight paths."""
    status = {}
    for name, keys in (("lpips", ("SEMCOMM_LPIPS_BACKBONE", "SEMCOMM_LPIPS_LIN")),
                       ("dists", ("SEMCOMM_DISTS_BACKBONE", "SEMCOMM_DISTS_WEIGHTS"))):
        what = {k.split("_", 2)[2].lower(): (os.environ.get(k), k) for k in keys}
        status[name] = _missing(name.upper(), what) or "available"
    return status
