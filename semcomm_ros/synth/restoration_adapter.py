"""Restoration Adapter omega (paper IV-B3, Eq. 7), as diffusers attention processors.

At every self-attention layer (``attn1`` of each transformer block) of the frozen backbone:

    z_t <- attention(Q, K, V) W^O + lambda_R * attention(Q~, K', V') W'^O

with Q~ = z~ W^Q (the degraded frame's features at the same layer, projected by the backbone's own
frozen W^Q), K' = z_t W'^K and V' = z_t W'^V. Only W'^K, W'^V, W'^O are new and trainable; they
form omega. The degraded features z~ come from the same UNet call: the batch is
``[main rows; degraded rows]`` and the degraded rows pass through the plain backbone (no ControlNet
residuals, no temporal attention), so z~ is exactly the backbone's feature of x~_t.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .runstate import RunState


def self_attention_names(unet) -> list[str]:
    """Module names of the backbone's self-attention layers (attn1 of BasicTransformerBlocks)."""
    from diffusers.models.attention_processor import Attention

    return [name for name, m in unet.named_modules()
            if isinstance(m, Attention) and name.endswith(".attn1") and not m.is_cross_attention]


def _key(name: str) -> str:
    return name.replace(".", "__")


class RestorationAdapter(nn.Module):
    """omega: one (W'^K, W'^V, W'^O) triple per backbone self-attention layer."""

    def __init__(self, layers: dict[str, tuple[int, int, bool]]):
        """``layers``: attention module name -> (query_dim, inner_dim, out_bias)."""
        super().__init__()
        self.names = list(layers)
        self.layers = nn.ModuleDict()
        for name, (dim, inner, out_bias) in layers.items():
            self.layers[_key(name)] = nn.ModuleDict({
                "to_k": nn.Linear(dim, inner, bias=False),
                "to_v": nn.Linear(dim, inner, bias=False),
                "to_out": nn.Linear(inner, dim, bias=out_bias),
            })

    @classmethod
    def from_unet(cls, unet, init: str = "backbone") -> "RestorationAdapter":
        """Build omega for ``unet``.

        init="backbone": W'^K, W'^V copied from the backbone's W^K, W^V and W'^O zero, so the
        adapter starts as the identity (the training start point). init="random": PyTorch's
        default Linear init (tiny test models, where the adapter must visibly act).
        """
        if init not in ("backbone", "random"):
            raise ValueError(f"init must be 'backbone' or 'random', got {init!r}")
        modules = dict(unet.named_modules())
        names = self_attention_names(unet)
        if not names:
            raise ValueError("the backbone UNet has no self-attention layer for the Restoration Adapter")
        layers = {}
        for name in names:
            attn = modules[name]
            layers[name] = (attn.to_q.in_features, attn.to_k.out_features, attn.to_out[0].bias is not None)
        adapter = cls(layers)
        if init == "backbone":
            with torch.no_grad():
                for name in names:
                    attn, mine = modules[name], adapter.layers[_key(name)]
                    mine["to_k"].weight.copy_(attn.to_k.weight)
                    mine["to_v"].weight.copy_(attn.to_v.weight)
                    mine["to_out"].weight.zero_()
                    if mine["to_out"].bias is not None:
                        mine["to_out"].bias.zero_()
        return adapter

    def attach(self, unet, state: RunState) -> None:
        """Install the Eq. 7 processor on every backbone self-attention layer of ``unet``."""
        modules = dict(unet.named_modules())
        for name in self.names:
            if name not in modules:
                raise ValueError(f"Restoration Adapter layer {name} does not exist in this backbone UNet")
            attn = modules[name]
            layer = self.layers[_key(name)]
            if layer["to_k"].in_features != attn.to_q.in_features or \
                    layer["to_k"].out_features != attn.to_k.out_features:
                raise ValueError(f"Restoration Adapter layer {name} has shape "
                                 f"{tuple(layer['to_k'].weight.shape)}, the backbone {tuple(attn.to_k.weight.shape)}")
            attn.set_processor(RestorationAttnProcessor(layer, state))


class RestorationAttnProcessor:
    """Self-attention of the frozen backbone plus the Eq. 7 restoration branch.

    A plain object (not an nn.Module) on purpose: the trainable W' live in ``RestorationAdapter``,
    so the backbone UNet's state dict stays exactly the backbone's.
    """

    def __init__(self, layer: nn.ModuleDict, state: RunState):
        self.layer = layer
        self.state = state

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        # Same arithmetic as diffusers' AttnProcessor2_0 so that lambda_R = 0 is the bare backbone.
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        batch_size, sequence_length, _ = (
            hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape)
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)
        source = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if encoder_hidden_states is not None and attn.norm_cross:
            source = attn.norm_encoder_hidden_states(source)
        key = attn.to_k(source)
        value = attn.to_v(source)
        inner_dim = key.shape[-1]
        head_dim = inner_dim // attn.heads
        query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=0.0,
                                             is_causal=False)
        out = out.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim).to(query.dtype)
        out = attn.to_out[0](out)
        out = attn.to_out[1](out)

        st = self.state
        if st.degraded and st.lambda_r != 0 and encoder_hidden_states is None:
            n = st.n_main
            if batch_size != 2 * n:
                raise RuntimeError(f"restoration batch layout broken: {batch_size} rows for {n} main rows")
            z = hidden_states[:n]
            q_deg = query[n:]  # Q~ = z~ W^Q, the frozen backbone projection of the degraded features
            k2 = self.layer["to_k"](z).view(n, -1, attn.heads, head_dim).transpose(1, 2)
            v2 = self.layer["to_v"](z).view(n, -1, attn.heads, head_dim).transpose(1, 2)
            r = F.scaled_dot_product_attention(q_deg, k2, v2, dropout_p=0.0, is_causal=False)
            r = r.transpose(1, 2).reshape(n, -1, attn.heads * head_dim).to(query.dtype)
            r = self.layer["to_out"](r)
            out = torch.cat([out[:n] + st.lambda_r * r, out[n:]], dim=0)

        if input_ndim == 4:
            out = out.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor
