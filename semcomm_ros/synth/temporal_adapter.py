"""Temporal Adapter phi (paper IV-B4, Eq. 8) and its causal, windowed form (IV-B5, Eq. 9).

phi is a diffusers ``MotionAdapter`` (AnimateDiff motion modules), so released AnimateDiff
weights load with ``MotionAdapter.from_pretrained`` and ours save in the same layout. The motion
modules sit where AnimateDiff's ``UNetMotionModel`` puts them -- after each spatial transformer
(blocks with attention) or each resnet (blocks without) of the frozen backbone -- attached with
forward hooks, so the backbone stays a stock ``UNet2DConditionModel``. Each applies temporal
attention across frames at every spatial location, weighted by lambda_T:

    z^{1:K} <- z^{1:K} + lambda_T * TemporalTransformer(z^{1:K})

We run the motion modules' layers ourselves (same weights, same order: GroupNorm, proj_in,
[norm1 -> attn1, norm2 -> attn2, norm3 -> FF] with sinusoidal positions, proj_out) to control the
attention pattern:

- "bidirectional": every frame sees every frame of the clip, absolute positions 0..K-1 and the
  GroupNorm over the whole clip -- exactly AnimateDiff (the teacher and the DMD critic).
- "block" (Eq. 9 literally): M_ij = 1 iff floor(j/W) <= floor(i/W) (0-based): a frame sees all
  earlier blocks and every frame of its own block of W, including later ones; absolute positions.
- "sliding" (default for streaming): frame i sees frames i-W+1..i. Positions are relative to the
  window (the oldest frame in the window at 0, the current one at n-1), i.e. the window looks to the
  adapter like a W-frame AnimateDiff clip, so streams of any length stay inside the trained range.

In the causal modes the GroupNorm statistics are per frame: AnimateDiff normalises over the whole
clip, which would let future frames change past outputs.

KV cache (IV-B5): the sinusoidal position is added before the K/V projections, which are linear,
so K_j at window slot p is (x_j W^K) + (pe_p W^K). The cache holds the content part x_j W^K (and
x_j W^V) of the last W-1 frames per motion-module attention and per denoising step; the position
part is a per-slot table. A new frame costs one frame's Q/K/V, and the result equals the masked
full-clip computation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .runstate import RunState, TemporalRun


def build_motion_adapter(unet, num_attention_heads: int | None = None, max_seq_length: int = 32,
                         norm_num_groups: int | None = None, transformer_layers: int = 1):
    """A MotionAdapter whose modules match ``unet`` (block channels, layers per block)."""
    from diffusers import MotionAdapter

    cfg = unet.config
    channels = tuple(cfg.block_out_channels)
    if num_attention_heads is None:
        num_attention_heads = 8 if channels[0] >= 256 else max(1, channels[0] // 16)
    for c in channels:
        if c % num_attention_heads:
            raise ValueError(f"motion heads {num_attention_heads} must divide block channels {channels}")
    layers = cfg.layers_per_block
    if not isinstance(layers, int):
        layers = tuple(layers)
    return MotionAdapter(
        block_out_channels=channels, motion_layers_per_block=layers,
        motion_transformer_layers_per_block=transformer_layers,
        motion_mid_block_layers_per_block=1, motion_transformer_layers_per_mid_block=transformer_layers,
        motion_num_attention_heads=num_attention_heads,
        motion_norm_num_groups=norm_num_groups or cfg.norm_num_groups,
        motion_max_seq_length=max_seq_length, use_motion_mid_block=unet.mid_block is not None,
    )


def _sites(unet, motion) -> list[tuple[str, nn.Module, nn.Module]]:
    """(name, backbone module whose output the motion module follows, motion module)."""
    sites = []

    def block_sites(prefix, block, mblock):
        attns = getattr(block, "attentions", None)
        anchors = list(attns) if attns is not None and len(attns) else list(block.resnets)
        kind = "attentions" if attns is not None and len(attns) else "resnets"
        mods = list(mblock.motion_modules) if mblock is not None else []
        if len(mods) != len(anchors):
            raise ValueError(f"Temporal Adapter does not match the backbone: {prefix} has {len(anchors)} "
                             f"{kind} but the MotionAdapter block has {len(mods)} motion modules")
        for i, (a, m) in enumerate(zip(anchors, mods)):
            sites.append((f"{prefix}.{kind}.{i}", a, m))

    if len(motion.down_blocks) != len(unet.down_blocks) or len(motion.up_blocks) != len(unet.up_blocks):
        raise ValueError(f"Temporal Adapter has {len(motion.down_blocks)}/{len(motion.up_blocks)} down/up blocks, "
                         f"the backbone {len(unet.down_blocks)}/{len(unet.up_blocks)}")
    for i, (b, mb) in enumerate(zip(unet.down_blocks, motion.down_blocks)):
        block_sites(f"down_blocks.{i}", b, mb)
    if motion.mid_block is not None:
        if unet.mid_block is None or not hasattr(unet.mid_block, "attentions"):
            raise ValueError("Temporal Adapter has a mid-block motion module "
                             "but the backbone mid block has no attention")
        block_sites("mid_block", unet.mid_block, motion.mid_block)
    for i, (b, mb) in enumerate(zip(unet.up_blocks, motion.up_blocks)):
        block_sites(f"up_blocks.{i}", b, mb)
    for name, anchor, m in sites:
        width = m.proj_in.in_features
        ch = getattr(anchor, "out_channels", None) or getattr(anchor, "in_channels", None)
        if ch is not None and ch != width:
            raise ValueError(f"Temporal Adapter module at {name} has {width} channels, the backbone {ch}")
    return sites


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[..., L, D] -> [..., heads, L, D/heads]"""
    *lead, length, dim = x.shape
    return x.view(*lead, length, heads, dim // heads).transpose(-2, -3)


def _merge(x: torch.Tensor) -> torch.Tensor:
    """[..., heads, L, d] -> [..., L, heads*d]"""
    x = x.transpose(-2, -3)
    return x.reshape(*x.shape[:-2], x.shape[-2] * x.shape[-1])


def block_causal_mask(frames: int, window: int, device=None) -> torch.Tensor:
    """Eq. 9 (0-based): True where frame i may attend frame j, i.e. floor(j/W) <= floor(i/W)."""
    idx = torch.arange(frames, device=device)
    return (idx[None, :] // window) <= (idx[:, None] // window)


def sliding_window_index(frames: int, window: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """For each query frame i, the key frames of its window slots 0..W-1 and which slots exist."""
    i = torch.arange(frames, device=device)[:, None]
    start = (i - window + 1).clamp(min=0)
    j = start + torch.arange(window, device=device)[None, :]
    valid = j <= i
    return j.clamp(max=frames - 1), valid


def _stream_tables(attn, pe: torch.Tensor, run: TemporalRun, key) -> dict:
    """Per-attention constants of the streaming path: fused W^Q|W^K|W^V and position tables.

    Kept in ``run.tables`` for the synthesizer's lifetime (weights are fixed at inference).
    """
    tables = run.tables if run.tables is not None else {}
    entry = tables.get(key)
    if entry is None:
        w = run.window
        weight = torch.cat([attn.to_q.weight, attn.to_k.weight, attn.to_v.weight])
        biases = [lin.bias for lin in (attn.to_q, attn.to_k, attn.to_v)]
        bias = None
        if any(b is not None for b in biases):
            bias = torch.cat([b if b is not None else weight.new_zeros(lin.out_features)
                              for b, lin in zip(biases, (attn.to_q, attn.to_k, attn.to_v))])
        entry = {"weight": weight, "bias": bias,
                 "q": F.linear(pe[:w], attn.to_q.weight), "k": F.linear(pe[:w], attn.to_k.weight),
                 "v": F.linear(pe[:w], attn.to_v.weight)}
        if run.tables is not None:
            tables[key] = entry
    return entry


def _fixed_cache_attention(q_c, kc_new, vc_new, tab: dict, run: TemporalRun, key, heads: int) -> torch.Tensor:
    """The streaming attention over a cache of fixed shape [N, W-1, D] of which the last ``run.fill``
    slots hold frames: the same frames, positions and weights as the growing cache (slot j is
    window position j - (W-1-fill); empty slots get no weight), so one traced graph serves every
    fill level of a stream's first W-1 frames."""
    w = run.window
    past_k, past_v = run.cache[key]
    kc, vc = torch.cat([past_k, kc_new], dim=1), torch.cat([past_v, vc_new], dim=1)  # [N, W, D]
    run.cache[key] = (kc[:, 1:], vc[:, 1:])
    n, _, dim = kc.shape
    d = dim // heads
    pos = torch.arange(w, device=kc.device) - (w - 1 - run.fill)
    bias = torch.zeros(w, device=kc.device).masked_fill(pos < 0, float("-inf"))
    pos = pos.clamp(min=0)
    q = (q_c + tab["q"][run.fill]).reshape(n, 1, heads, d)
    k = (kc + tab["k"][pos]).reshape(n, w, heads, d)
    v = (vc + tab["v"][pos]).reshape(n, w, heads, d)
    # W keys a pixel: products summed over d are a few elementwise operators over all pixels in the
    # graph, where a head split and two products of N*heads tiny matrices were the graph's costliest
    # operators after the convolutions (the graph's motion modules 6.9 -> 5.2 ms a call profiled,
    # docs/synth.md)
    scores = (q * k).sum(-1).float() * d ** -0.5 + bias[:, None]  # [N, W, heads]
    p = scores.softmax(dim=1).to(v.dtype)
    return (p[..., None] * v).sum(1).reshape(n, 1, dim)


def _streaming_attention(attn, x: torch.Tensor, pe: torch.Tensor, run: TemporalRun, key) -> torch.Tensor:
    """One new frame (x: [N, 1, D]); the earlier window frames come from this step's KV cache."""
    tab = _stream_tables(attn, pe, run, key)
    heads = attn.heads
    qkv = F.linear(x, tab["weight"], tab["bias"])
    q_c, kc_new, vc_new = qkv.chunk(3, dim=-1)
    if run.fill is not None:
        return _fixed_cache_attention(q_c, kc_new, vc_new, tab, run, key, heads)
    past = run.cache.get(key)
    if past is None:
        kc, vc = kc_new, vc_new
    else:
        kc, vc = torch.cat([past[0], kc_new], dim=1), torch.cat([past[1], vc_new], dim=1)
    n = kc.shape[1]
    keep = run.window - 1
    run.cache[key] = (kc[:, n - keep:], vc[:, n - keep:]) if keep > 0 else (kc[:, :0], vc[:, :0])
    q = _heads(q_c + tab["q"][n - 1], heads)  # the current frame sits at the last window slot
    k = _heads(kc + tab["k"][:n], heads)
    v = _heads(vc + tab["v"][:n], heads)
    # a handful of keys: two small matmuls beat the fused SDPA kernel's fixed cost here
    scores = (q @ k.transpose(-1, -2)).float() * (q.shape[-1] ** -0.5)
    return _merge(scores.softmax(dim=-1).to(v.dtype) @ v)


def _temporal_attention(attn, x: torch.Tensor, pe: torch.Tensor, run: TemporalRun, key) -> torch.Tensor:
    """One temporal self-attention of a motion module. x: [N, F, D] normed tokens, N = clips*pixels."""
    _, frames, _ = x.shape
    heads = attn.heads
    mode = run.mode
    if run.cache is not None:
        out = _streaming_attention(attn, x, pe, run, key)
    elif mode == "sliding":
        w = min(run.window, frames)
        jidx, valid = sliding_window_index(frames, w, device=x.device)
        qpos = valid.sum(dim=1) - 1  # the query sits at the last occupied slot
        q = attn.to_q(x + pe[qpos])  # [N, F, D]
        kc, vc = attn.to_k(x), attn.to_v(x)
        k = kc[:, jidx] + F.linear(pe[:w], attn.to_k.weight)  # [N, F, W, D]
        v = vc[:, jidx] + F.linear(pe[:w], attn.to_v.weight)
        qh = _heads(q.unsqueeze(2), heads)  # [N, F, h, 1, d]
        out = F.scaled_dot_product_attention(qh, _heads(k, heads), _heads(v, heads),
                                             attn_mask=valid[:, None, None, :])
        out = _merge(out).squeeze(2)
    else:
        if frames > pe.shape[0]:
            raise ValueError(f"clip of {frames} frames exceeds the Temporal Adapter's "
                             f"{pe.shape[0]} positions (motion_max_seq_length)")
        xp = x + pe[:frames]
        q, k, v = attn.to_q(xp), attn.to_k(xp), attn.to_v(xp)
        mask = block_causal_mask(frames, run.window, device=x.device) if mode == "block" else None
        out = _merge(F.scaled_dot_product_attention(_heads(q, heads), _heads(k, heads), _heads(v, heads),
                                                    attn_mask=mask))
    out = attn.to_out[0](out.to(x.dtype))
    return attn.to_out[1](out)


def motion_module_forward(mm, h: torch.Tensor, run: TemporalRun, key) -> torch.Tensor:
    """Eq. 8 for one motion module (AnimateDiffTransformer3D). h: [clips*F, C, H, W] main rows."""
    rows, ch, hh, ww = h.shape
    frames = run.frames
    clips = rows // frames
    if run.mode == "bidirectional" and run.cache is None:
        x = h.reshape(clips, frames, ch, hh, ww).permute(0, 2, 1, 3, 4)
        x = mm.norm(x).permute(0, 3, 4, 2, 1)  # clip statistics, as AnimateDiff
    else:
        x = mm.norm(h).reshape(clips, frames, ch, hh, ww).permute(0, 3, 4, 1, 2)  # per-frame statistics
    x = mm.proj_in(x.reshape(clips * hh * ww, frames, ch))
    for b, tb in enumerate(mm.transformer_blocks):
        pe = tb.pos_embed.pe[0].to(x.dtype) if tb.pos_embed is not None else \
            torch.zeros(64, x.shape[-1], dtype=x.dtype, device=x.device)
        x = _temporal_attention(tb.attn1, tb.norm1(x), pe, run, (key, b, 1)) + x
        if tb.attn2 is not None:
            x = _temporal_attention(tb.attn2, tb.norm2(x), pe, run, (key, b, 2)) + x
        x = tb.ff(tb.norm3(x)) + x
    x = mm.proj_out(x)
    x = x.reshape(clips, hh, ww, frames, ch).permute(0, 3, 4, 1, 2).reshape(rows, ch, hh, ww)
    return h + run.lambda_t * x


class TemporalAdapter(nn.Module):
    """phi: a MotionAdapter plus the hooks that run it inside the frozen backbone."""

    def __init__(self, motion):
        super().__init__()
        self.motion = motion

    @classmethod
    def from_unet(cls, unet, **kwargs) -> "TemporalAdapter":
        return cls(build_motion_adapter(unet, **kwargs))

    @property
    def max_frames(self) -> int:
        return int(self.motion.config.motion_max_seq_length)

    def attach(self, unet, state: RunState) -> list:
        """Register the motion modules after their backbone anchors; returns the hook handles."""
        handles = []
        for idx, (_name, anchor, mm) in enumerate(_sites(unet, self.motion)):
            handles.append(anchor.register_forward_hook(_make_hook(mm, state, idx)))
        return handles


def _make_hook(mm, state: RunState, key):
    def hook(module, args, output):
        run = state.temporal
        if run is None or run.lambda_t == 0:
            return output
        h = output[0] if isinstance(output, tuple) else output
        n = state.n_main
        main = motion_module_forward(mm, h[:n], run, key)
        h = torch.cat([main, h[n:]], dim=0) if h.shape[0] > n else main
        return (h,) + tuple(output[1:]) if isinstance(output, tuple) else h

    return hook
