"""The whole chain without ROS: robot side -> constrained link -> operator side.

``transmit`` runs the robot side (segmentation, semantic encoder, low-res encoder) on a clip,
pushes both packet streams through a :class:`~semcomm_ros.link.SimulatedLink` in simulated time,
and decodes them on the operator side exactly as the decoder node does (loss -> hold the last
frame and ask for a refresh). ``synthesize`` then runs the causal synthesizer over what arrived.
The demo and the Table II evaluation share these two steps, so ablations reuse one transmission.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from semcomm_ros.codec import BitstreamError, LowResDecoder, LowResEncoder, SemanticDecoder, SemanticEncoder
from semcomm_ros.link import LinkParams, SimulatedLink

log = logging.getLogger(__name__)


@dataclass
class ChainConfig:
    fps: float = 10.0
    # semantic codec (paper IV-A): our "tracked" profile by default, "paper" for the exact scheme
    xi: float | None = None  # None: the profile's default (paper 6 px, P=4; tracked 4 px, P=32)
    period: int | None = None
    q_symbols: int = 256
    profile: str = "tracked"
    # low-res stream (paper V-C)
    lowres_kbps: float = 1.0
    lowres_scale: int = 4
    lowres_codec: str = "vp9"
    # the link both streams share
    link_kbps: float = 2.0
    latency_ms: float = 0.0
    loss_rate: float = 0.0
    reorder_rate: float = 0.0
    seed: int = 0


@dataclass
class Received:
    """What the operator station reconstructed, one entry per captured frame."""

    labels: list[np.ndarray]  # decoded label maps (full resolution)
    lowres: list[np.ndarray]  # decoded low-res frames (1/scale resolution)
    semantic_bits: list[int]  # bits sent per frame, semantic stream
    lowres_bits: list[int]  # bits sent per frame, low-res stream
    latency_s: list[float]  # capture -> both packets decoded, per frame (NaN: concealed)
    events: dict = field(default_factory=dict)  # losses, concealed frames, refresh requests

    @property
    def total_bits(self) -> int:
        return int(sum(self.semantic_bits) + sum(self.lowres_bits))


def transmit(frames_rgb, segment, cfg: ChainConfig, progress=None) -> Received:
    """Robot side + link + decoders over a whole clip (list of HxWx3 uint8 frames).

    ``segment``: rgb -> uint8 label map (the robot's segmenter). ``progress``: an optional
    callable invoked once per frame (e.g. a tqdm ``update``).
    """
    if not frames_rgb:
        raise ValueError("transmit needs at least one frame")
    h, w = frames_rgb[0].shape[:2]
    sem_enc = SemanticEncoder(xi=cfg.xi, period=cfg.period, q_symbols=cfg.q_symbols, profile=cfg.profile)
    low_enc = LowResEncoder(w, h, fps=int(round(cfg.fps)), scale=cfg.lowres_scale, kbps=cfg.lowres_kbps,
                            codec=cfg.lowres_codec)
    link = SimulatedLink(LinkParams(bandwidth_kbps=cfg.link_kbps, latency_ms=cfg.latency_ms,
                                    loss_rate=cfg.loss_rate, reorder_rate=cfg.reorder_rate), seed=cfg.seed)
    sem_dec, low_dec = SemanticDecoder(), LowResDecoder()
    n = len(frames_rgb)
    sem_bits, low_bits = [0] * n, [0] * n
    arrived: dict[tuple[str, int], float] = {}
    got_labels: dict[int, np.ndarray] = {}
    got_low: dict[int, np.ndarray] = {}
    events = {"semantic_lost": 0, "lowres_lost": 0, "bad_packets": 0, "refresh_requests": 0}

    def deliver(t: float) -> None:
        for stream, k, packet in link.receive(t):
            arrived[(stream, k)] = t
            try:
                if stream == "semantic":
                    got_labels[k] = sem_dec.decode(packet)
                else:
                    rgb = low_dec.decode(packet)
                    if rgb is not None:
                        got_low[k] = rgb
                    elif low_dec.needs_keyframe:
                        events["lowres_lost"] += 1
                        events["refresh_requests"] += 1
                        low_enc.force_keyframe()  # the keyframe_request feedback topic, simulated
            except BitstreamError as exc:  # includes the semantic FrameLostError
                log.warning("frame %d (%s): %s", k, stream, exc)
                events["semantic_lost" if stream == "semantic" else "bad_packets"] += 1
                events["refresh_requests"] += 1
                (sem_enc.force_iframe if stream == "semantic" else low_enc.force_keyframe)()

    for k, rgb in enumerate(frames_rgb):
        t = k / cfg.fps
        labels = segment(rgb)
        sem_packet = sem_enc.encode(labels)
        low_packet = low_enc.encode(rgb)
        sem_bits[k], low_bits[k] = 8 * len(sem_packet), 8 * len(low_packet)
        link.send(t, ("semantic", k, sem_packet), len(sem_packet))
        link.send(t, ("lowres", k, low_packet), len(low_packet))
        deliver(t)
        if progress:
            progress()
    low_enc.close()  # SVT-AV1 wants its end of stream; the other codecs have nothing pending
    tail = n / cfg.fps
    while link.next_arrival() is not None:
        tail = max(tail, link.next_arrival())
        deliver(tail)

    labels_out, low_out, latency = [], [], []
    last_labels = np.zeros((h, w), np.uint8)
    last_low = np.zeros((h // cfg.lowres_scale, w // cfg.lowres_scale, 3), np.uint8)
    for k in range(n):
        # Concealment: a frame whose packet never decoded holds the last good one, as the node does.
        last_labels = got_labels.get(k, last_labels)
        last_low = got_low.get(k, last_low)
        labels_out.append(last_labels)
        low_out.append(last_low)
        if k in got_labels and k in got_low:
            latency.append(max(arrived[("semantic", k)], arrived[("lowres", k)]) - k / cfg.fps)
        else:
            latency.append(float("nan"))
    events["concealed_frames"] = int(sum(np.isnan(latency)))
    events["link_dropped"] = link.dropped_loss + link.dropped_queue
    return Received(labels_out, low_out, sem_bits, low_bits, latency, events)


def synthesize(received: Received, synth, seed: int = 0, progress=None) -> tuple[list[np.ndarray], float]:
    """Causal synthesis over a received clip; returns (frames, steady-state frames per second).

    The speed excludes one untimed warm-up frame (first-call allocations and kernel selection), as
    a decoder node pays it once at start-up, not per frame.
    """
    h, w = synth.output_size
    lh, lw = synth.lowres_size

    def model_inputs(labels, low):
        # The model runs at its own resolution: labels by nearest neighbour (ids stay ids), the
        # degraded frame by area averaging (what the model's lowres_factor expects).
        if labels.shape != (h, w):
            labels = cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST)
        if low.shape[:2] != (lh, lw):
            low = cv2.resize(low, (lw, lh), interpolation=cv2.INTER_AREA)
        return labels, low

    if received.labels:
        synth.reset()
        synth(*model_inputs(received.labels[0], received.lowres[0]), seed=seed)
    synth.reset()
    out = []
    t0 = time.perf_counter()
    for k, (labels, low) in enumerate(zip(received.labels, received.lowres)):
        out.append(synth(*model_inputs(labels, low), seed=seed + k))
        if progress:
            progress()
    dt = time.perf_counter() - t0
    return out, len(out) / dt if dt > 0 else float("inf")
