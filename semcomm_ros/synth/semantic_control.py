"""Semantic Control psi (paper IV-B2): a ControlNet on the decoded label map Y^k.

``z_t^k <- z_t^k + lambda_C * zbar^k``: the ControlNet (a trainable clone of the backbone encoder,
``ControlNetModel.from_unet``) produces residuals zbar^k that are added to the backbone's skip
connections and mid block, scaled by lambda_C (diffusers' ``conditioning_scale``).

Label-map encoding: one-hot, ``num_classes`` input channels at full frame resolution. Chosen over
a colour palette (which imposes an arbitrary metric between class ids: classes with similar
colours look alike to the first convolution) and over a learned embedding (which is equivalent to
one-hot followed by a 1x1 convolution -- exactly what the ControlNet's first conditioning layer
already is). One-hot therefore loses nothing and keeps class ids unordered.
"""

from __future__ import annotations

import numpy as np
import torch


def check_labels(labels, num_classes: int, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Validate a label map (or a stack of them) and return it as a long tensor.

    Raises ValueError for non-integer maps, negative ids, ids >= num_classes, or a size other
    than ``size`` (H, W).
    """
    if isinstance(labels, np.ndarray):
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"label map must hold integer class ids, got dtype {labels.dtype}")
        labels = torch.from_numpy(np.ascontiguousarray(labels))
    elif not isinstance(labels, torch.Tensor):
        raise ValueError(f"label map must be a numpy array or torch tensor, got {type(labels).__name__}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"label map must hold integer class ids, got dtype {labels.dtype}")
    if labels.ndim < 2:
        raise ValueError(f"label map must be at least 2-D (H, W), got shape {tuple(labels.shape)}")
    if size is not None and tuple(labels.shape[-2:]) != tuple(size):
        raise ValueError(f"label map is {labels.shape[-2]}x{labels.shape[-1]} but the synthesizer "
                         f"outputs {size[0]}x{size[1]}: label maps must have the output size")
    labels = labels.long()
    if labels.numel():
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0:
            raise ValueError(f"label map holds negative class id {lo}")
        if hi >= num_classes:
            raise ValueError(f"label map holds class id {hi} but the synthesizer knows {num_classes} "
                             f"classes (ids 0..{num_classes - 1})")
    return labels


def one_hot(labels: torch.Tensor, num_classes: int, dtype=torch.float32) -> torch.Tensor:
    """[..., H, W] class ids -> [..., num_classes, H, W] one-hot ControlNet condition."""
    out = torch.nn.functional.one_hot(labels.long(), num_classes)  # [..., H, W, C]
    return out.movedim(-1, -3).to(dtype)


def build_controlnet(unet, num_classes: int, conditioning_embedding_out_channels=None):
    """psi: ControlNet cloned from the backbone encoder, taking the one-hot label map."""
    from diffusers import ControlNetModel

    kwargs = {}
    if conditioning_embedding_out_channels is not None:
        kwargs["conditioning_embedding_out_channels"] = tuple(conditioning_embedding_out_channels)
    return ControlNetModel.from_unet(unet, conditioning_channels=num_classes, **kwargs)


class _Embedded(torch.nn.Module):
    """Stands in for the ControlNet's conditioning embedding when it was computed beforehand."""

    def forward(self, cond):
        return cond


def condition_embedding(controlnet, cond: torch.Tensor) -> torch.Tensor:
    """The ControlNet's embedding of the one-hot label map (it does not depend on x_t or t)."""
    return controlnet.controlnet_cond_embedding(cond)


def controlnet_residuals(controlnet, sample, timestep, encoder_hidden_states, cond, lambda_c: float,
                         cond_is_embedding: bool = False):
    """lambda_C * zbar: the ControlNet's down/mid residuals for the backbone decoder.

    ``cond_is_embedding``: ``cond`` is already ``condition_embedding(controlnet, one_hot)``; the
    streaming synthesizer computes it once per frame instead of once per denoising step.
    ``lambda_c`` may be a 0-d tensor: an exported graph then keeps it as an input (a live ROS parameter).
    """
    scale = lambda_c if isinstance(lambda_c, torch.Tensor) else float(lambda_c)
    if cond_is_embedding:
        original = controlnet.controlnet_cond_embedding
        controlnet.controlnet_cond_embedding = _Embedded()
        try:
            down, mid = controlnet(sample, timestep, encoder_hidden_states=encoder_hidden_states,
                                   controlnet_cond=cond, conditioning_scale=scale, return_dict=False)
        finally:
            controlnet.controlnet_cond_embedding = original
    else:
        down, mid = controlnet(sample, timestep, encoder_hidden_states=encoder_hidden_states,
                               controlnet_cond=cond, conditioning_scale=scale, return_dict=False)
    return list(down), mid
