"""From the model's resolution to the camera's: label-guided upsampling and data consistency.

The synthesizer runs at its own small resolution (128x128 for the shipped model) while the operator
holds two things at the camera's resolution or close to it: the decoded label map (full size, the
semantic codec's contours) and the received low-res frame. ``to_camera`` uses both:

1. **Label-guided upsampling.** Each output pixel takes its colour only from model-resolution pixels
   of its own class (a normalised convolution per class: ``blur(I * w_c) / blur(w_c)`` with ``w_c``
   the share of each model pixel covered by class c, sharpened), so object edges land exactly on the
   decoded contours instead of being blurred over 4x4 camera pixels, and an object's colour never
   bleeds into the table.
2. **Data consistency** (optional, ``consistency > 0``): the output's low frequencies are pulled to
   the received low-res frame's, also per class, so the picture stays faithful to what the camera
   actually saw where the low-res stream resolves it (colours, lighting, the table) and keeps the
   synthesizer's detail above that scale. ``consistency = 1`` replaces the low band entirely.

Both are cheap (a few ms at 512x512 on a CPU: a handful of resizes and blurs per class present).
The decoder node, ``system.synthesize`` and the evaluation call this one function.
"""

from __future__ import annotations

import cv2
import numpy as np

#: exponent on a model pixel's class share: boundary pixels (a blend of object and table in the
#: low-resolution image) count for little, pure pixels for much
PURITY_POWER = 4.0
#: the normalised convolution's Gaussian, in model pixels: wide enough that a thin object still
#: finds pure pixels of its class, narrow enough to keep an object's markings
GUIDE_SIGMA = 0.8
#: weights below this count as "no sample of the class nearby" (plain upsampling is used there)
_EPS = 1e-4


def _check(frame: np.ndarray, labels: np.ndarray) -> None:
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frame must be HxWx3, got shape {frame.shape}")
    if labels.ndim != 2:
        raise ValueError(f"labels must be an HxW class map, got shape {labels.shape}")
    if labels.shape[0] < frame.shape[0] or labels.shape[1] < frame.shape[1]:
        raise ValueError(f"labels ({labels.shape[0]}x{labels.shape[1]}) must be at least the frame's size "
                         f"({frame.shape[0]}x{frame.shape[1]}): the camera size is the label map's")


def _present(labels: np.ndarray) -> np.ndarray:
    """The class ids in ``labels``, ascending (np.unique's answer; a histogram is 4x cheaper for the
    unsigned maps the decoder hands out)."""
    if labels.dtype.kind == "u":
        return np.flatnonzero(np.bincount(labels.ravel())).astype(labels.dtype)
    return np.unique(labels)


def _class_shares(labels: np.ndarray, classes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """[K, h, w] float32: share of each model-resolution pixel covered by each class."""
    h, w = size
    return np.stack([cv2.resize((labels == c).astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
                     for c in classes])


def _guided(img: np.ndarray, labels: np.ndarray, classes: np.ndarray, shares: np.ndarray,
            sigma: float) -> np.ndarray:
    """Normalised convolution of ``img`` (h, w, 3 float32) per class, read out at the labels' size."""
    H, W = labels.shape
    h, w = img.shape[:2]
    out = cv2.resize(img, (W, H), interpolation=cv2.INTER_LINEAR)
    fy, fx = H // h, W // w
    # With an integer factor a class is upsampled only over its own bounding box (objects cover a
    # few percent of a frame): cv2.resize maps crop pixels exactly as it maps the whole image, and
    # the 2-pixel margin keeps the crop's replicated border away from the class's pixels.
    crop = H == fy * h and W == fx * w
    for k, c in enumerate(classes):
        weight = shares[k] ** PURITY_POWER
        num = cv2.GaussianBlur(img * weight[..., None], (0, 0), sigma)
        den = cv2.GaussianBlur(weight, (0, 0), sigma)
        if crop:
            ys, xs = np.nonzero(shares[k])
            if not len(ys):
                continue
            a0, a1 = max(ys.min() - 2, 0), min(ys.max() + 3, h)
            b0, b1 = max(xs.min() - 2, 0), min(xs.max() + 3, w)
            size = ((b1 - b0) * fx, (a1 - a0) * fy)
            num = cv2.resize(np.ascontiguousarray(num[a0:a1, b0:b1]), size, interpolation=cv2.INTER_LINEAR)
            den = cv2.resize(np.ascontiguousarray(den[a0:a1, b0:b1]), size, interpolation=cv2.INTER_LINEAR)
            region = (slice(a0 * fy, a1 * fy), slice(b0 * fx, b1 * fx))
        else:
            num = cv2.resize(num, (W, H), interpolation=cv2.INTER_LINEAR)
            den = cv2.resize(den, (W, H), interpolation=cv2.INTER_LINEAR)
            region = (slice(0, H), slice(0, W))
        ok = (labels[region] == c) & (den > _EPS)
        # OpenCV's masked copy writes into the crop in place, 2x faster than numpy's (the table's crop
        # is the whole frame)
        cv2.copyTo(num / np.maximum(den, _EPS)[..., None], ok.view(np.uint8), out[region])
    return out


def to_camera(frame: np.ndarray, labels: np.ndarray, lowres: np.ndarray | None = None,
              consistency: float = 0.0, guided: bool = True,
              consistency_objects: float | None = None) -> np.ndarray:
    """A model-resolution frame (h, w, 3 uint8) -> the label map's size (H, W, 3 uint8).

    labels: the decoded label map at the camera's size; lowres: the received low-res frame (any size,
    upsampled here) for the data-consistency step; consistency in [0, 1] on the background (class
    0, the table) and ``consistency_objects`` (default: the same) on every other class, because the
    received frame is faithful on the large smooth table and smears the small objects; guided=False:
    plain bilinear upsampling (the baseline this is measured against).
    """
    frame = np.asarray(frame)
    labels = np.asarray(labels)
    _check(frame, labels)
    objects = consistency if consistency_objects is None else consistency_objects
    for name, value in (("consistency", consistency), ("consistency_objects", objects)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    if max(consistency, objects) > 0 and lowres is None:
        raise ValueError("consistency > 0 needs the received low-res frame")
    H, W = labels.shape
    h, w = frame.shape[:2]
    img = frame.astype(np.float32)
    if not guided:
        out = cv2.resize(img, (W, H), interpolation=cv2.INTER_LINEAR)
        if max(consistency, objects) > 0:
            amount = np.where(labels == 0, consistency, objects).astype(np.float32)[..., None]
            out = _consistent(out, lowres, amount, None, None, None)
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)
    classes = _present(labels)
    shares = _class_shares(labels, classes, (h, w))
    out = _guided(img, labels, classes, shares, GUIDE_SIGMA)
    if max(consistency, objects) > 0:
        amount = np.where(labels == 0, consistency, objects).astype(np.float32)[..., None]
        # a class whose share is 0 keeps the synthesizer's output: no need to guide a delta there
        pulled = np.array([c for c in classes if (consistency if c == 0 else objects) > 0], classes.dtype)
        out = _consistent(out, lowres, amount, labels, pulled, (h, w))
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _consistent(out: np.ndarray, lowres: np.ndarray, amount, labels, classes, size) -> np.ndarray:
    """Replace ``amount`` of out's low band by the received frame's (per class when labels given)."""
    lowres = np.asarray(lowres)
    if lowres.ndim != 3 or lowres.shape[2] != 3:
        raise ValueError(f"lowres must be HxWx3, got shape {lowres.shape}")
    H, W = out.shape[:2]
    lh, lw = lowres.shape[:2]
    ref = lowres.astype(np.float32)
    # The low band is what the received frame resolves: compare both at its resolution.
    mine = cv2.resize(out, (lw, lh), interpolation=cv2.INTER_AREA)
    if labels is None:
        delta = cv2.resize(ref - mine, (W, H), interpolation=cv2.INTER_LINEAR)
    else:
        shares = _class_shares(labels, classes, (lh, lw))
        delta = _guided(ref - mine, labels, classes, shares, GUIDE_SIGMA)
    return out + amount * delta
