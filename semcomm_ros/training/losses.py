"""Losses, per-batch noise generators and loss weights shared by every training stage.

A leaf module: it imports nothing from the rest of ``training``, so the stage modules
(``backbone``, ``adapters``) and the runner can all use it without import cycles.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def batch_generator(batch, generator: torch.Generator | None) -> torch.Generator | None:
    """A batch may carry its own noise seed ("seed"): the loss on a fixed batch is then a fixed function."""
    if generator is None and isinstance(batch, dict) and "seed" in batch:
        return torch.Generator().manual_seed(int(batch["seed"]))
    return generator


def object_weights(labels: torch.Tensor, latent_hw: tuple[int, int], object_weight: float) -> torch.Tensor | None:
    """Per-latent-cell loss weights 1 + w * (share of object pixels in the cell), or None if w = 0.

    The table fills ~90 % of a tabletop frame: an unweighted Eq. 3 spends the small denoiser's
    capacity on table texture and renders objects as faint blobs, which is what the segmenter
    (and the operator) needs to see. Shape: labels [..., H, W] -> [..., 1, h, w].
    """
    if not object_weight:
        return None
    lead = labels.shape[:-2]
    obj = (labels > 0).float().reshape(-1, 1, *labels.shape[-2:])
    share = F.adaptive_avg_pool2d(obj, latent_hw)
    return (1.0 + object_weight * share).reshape(*lead, 1, *latent_hw)


def weighted_mse(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """MSE, weighted and normalised by the mean weight (the loss keeps plain MSE's scale)."""
    if weight is None:
        return F.mse_loss(pred, target)
    weight = weight.to(pred.dtype).expand_as(pred)
    return (weight * (pred - target).pow(2)).mean() / weight.mean()


def image_gradient_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    dxa, dxb = a[..., :, 1:] - a[..., :, :-1], b[..., :, 1:] - b[..., :, :-1]
    dya, dyb = a[..., 1:, :] - a[..., :-1, :], b[..., 1:, :] - b[..., :-1, :]
    return (dxa - dxb).abs().mean() + (dya - dyb).abs().mean()
