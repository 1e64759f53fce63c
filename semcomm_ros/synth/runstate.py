"""Per-call state shared by the attention processors (omega) and the temporal hooks (phi).

The UNet is called with the batch ``[main rows; degraded rows]`` when the Restoration Adapter is
active. The processors and hooks read from here which rows are which, the module weights, and
the temporal context (clip layout, causal mode, KV cache of the current denoising step).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TemporalRun:
    #: "bidirectional" (teacher/critic), "sliding" (window W, no delay) or "block" (Eq. 9)
    mode: str
    #: frames per clip; the main rows are ``clips * frames`` ordered clip-major
    frames: int
    lambda_t: float
    window: int
    #: streaming: the KV cache of the current denoising step (dict site key -> tensors), else None
    cache: dict | None = None
    #: streaming: per-attention constants (fused projections, position tables), kept across frames
    tables: dict | None = None
    #: streaming with a fixed-shape cache (the exported graph): how many of the cache's W-1 slots
    #: hold frames (a 0-d long tensor, 0..W-1; the newest frames sit in the last slots). None: the
    #: cache grows from empty to W-1 frames (the torch runtime)
    fill: object = None


@dataclass
class RunState:
    n_main: int = 0
    degraded: bool = False
    lambda_r: float = 0.0
    temporal: TemporalRun | None = None

    def clear(self) -> None:
        self.n_main = 0
        self.degraded = False
        self.lambda_r = 0.0
        self.temporal = None
