"""Image degradations the segmenter must survive.

The same segmenter scores synthesized frames (a small diffusion model's 128x128 output upsampled
to 512x512, blurry and with colour drift) and decoded codec frames, so training sees those
artefacts: downscale to 128/96/64 and back up, blur, sensor noise, JPEG blocking, colour jitter.
"""

from __future__ import annotations

import cv2
import numpy as np


def down_up(rgb: np.ndarray, size: int, up: int = cv2.INTER_CUBIC) -> np.ndarray:
    """Downscale to ``size`` pixels on the short side (area filter) and back to the input size."""
    h, w = rgb.shape[:2]
    k = size / min(h, w)
    small = cv2.resize(rgb, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=up)


def jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", rgb, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV could not JPEG-encode the image")
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)


def colour_jitter(rgb: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    img = rgb.astype(np.float32)
    gain = 1.0 + strength * rng.uniform(-0.15, 0.15, 3)  # per-channel: colour cast
    bright = strength * rng.uniform(-20, 20)
    contrast = 1.0 + strength * rng.uniform(-0.2, 0.2)
    mean = img.mean()
    img = (img - mean) * contrast + mean
    img = img * gain + bright
    grey = img.mean(2, keepdims=True)
    sat = 1.0 + strength * rng.uniform(-0.3, 0.2)
    img = grey + (img - grey) * sat
    return np.clip(img, 0, 255).astype(np.uint8)


def random_degrade(rgb: np.ndarray, rng: np.random.Generator, p_clean: float = 0.3) -> np.ndarray:
    """A random mix of the degradations above (``p_clean`` of the time none)."""
    if rng.random() < p_clean:
        return rgb
    img = rgb
    if rng.random() < 0.6:
        size = int(rng.choice([128, 96, 64, 160]))
        up = int(rng.choice([cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_NEAREST], p=[0.45, 0.45, 0.1]))
        img = down_up(img, size, up)
    elif rng.random() < 0.4:
        k = int(rng.choice([3, 5, 7]))
        img = cv2.GaussianBlur(img, (k, k), 0)
    if rng.random() < 0.5:
        img = colour_jitter(img, rng)
    if rng.random() < 0.4:
        sigma = rng.uniform(2, 10)
        img = np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)
    if rng.random() < 0.35:
        img = jpeg(img, int(rng.integers(10, 60)))
    return img
