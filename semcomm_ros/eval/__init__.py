"""Evaluation: the paper's metrics (V-E, ``metrics``: the one place every metric is computed) and
the Table II evaluation (``table``, ``report``)."""

from semcomm_ros.eval.metrics import (
    bits,
    bpp,
    dists,
    flicker,
    kbps,
    lpips,
    miou,
    ms_ssim,
    perceptual_status,
    psnr,
    segmentation_miou,
    window_kbps,
)

__all__ = [
    "bits", "bpp", "dists", "flicker", "kbps", "lpips", "miou", "ms_ssim", "perceptual_status",
    "psnr", "segmentation_miou", "window_kbps",
]
