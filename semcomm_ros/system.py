"""The whole chain without ROS: robot side -> constrained link -> operator side.

``transmit`` runs the robot side (segmentation, semantic encoder, low-res encoder) on a clip,
pushes both packet streams through a :class:`~semcomm_ros.link.SimulatedLink` in simulated time,
and hands them to the operator's :class:`~semcomm_ros.receiver.Receiver`, the one the decoder node
runs (jitter buffer, loss -> hold the last frame and ask for a refresh, low-res paired by index).
``synthesize`` then runs the causal synthesizer over what arrived.
The demo and the Table II evaluation share these two steps, so ablations reuse one transmission.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from semcomm_ros.codec import LowResEncoder, SemanticEncoder
from semcomm_ros.link import LinkParams, SimulatedLink
from semcomm_ros.receiver import Frame, Receiver, model_inputs, to_camera

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
    receiver = Receiver(logger=log)
    n = len(frames_rgb)
    sem_bits, low_bits = [0] * n, [0] * n
    got: dict[int, Frame] = {}

    def deliver(t: float, end: bool = False) -> None:
        for stream, k, packet in link.receive(t):
            (receiver.push_semantic if stream == "semantic" else receiver.push_lowres)(k, packet, t)
        for f in (receiver.flush(t) if end else receiver.poll(t)):
            got[f.index] = f
        for r in receiver.take_requests():  # the keyframe_request feedback topic, simulated
            if r.semantic:
                sem_enc.force_iframe()
            if r.lowres:
                low_enc.force_keyframe()

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
    deliver(tail, end=True)

    labels_out, low_out, latency = [], [], []
    last_labels = np.zeros((h, w), np.uint8)
    last_low = np.zeros((h // cfg.lowres_scale, w // cfg.lowres_scale, 3), np.uint8)
    for k in range(n):
        # Concealment: what the receiver holds for a frame it could not decode, and before the
        # first frame it decoded, black
        f = got.get(k)
        if f is not None and f.labels is not None:
            last_labels = f.labels
        if f is not None and f.lowres is not None:
            last_low = f.lowres
        labels_out.append(last_labels)
        low_out.append(last_low)
        latency.append(f.t_ready - k / cfg.fps if f is not None and not f.concealed else float("nan"))
    c = receiver.counts
    events = {"semantic_lost": sum(f is None or not f.labels_new for f in map(got.get, range(n))),
              "lowres_lost": sum(f is None or not f.lowres_new for f in map(got.get, range(n))),
              "bad_packets": c["bad_packets"], "refresh_requests": c["keyframe_requests"],
              "concealed_frames": int(sum(np.isnan(latency))),
              "link_dropped": link.dropped_loss + link.dropped_queue}
    return Received(labels_out, low_out, sem_bits, low_bits, latency, events)


def synthesize(received: Received, synth, seed: int = 0, progress=None, *,
               camera_size: bool = False) -> tuple[list[np.ndarray], float]:
    """Causal synthesis over a received clip; returns (frames, steady-state frames per second).

    Frames come at the model's resolution, or with ``camera_size`` at the camera's (the decoded
    label map's), upsampled by ``receiver.to_camera`` as the decoder node does; the speed then
    includes the upsampling. The speed excludes one untimed warm-up frame (first-call allocations
    and kernel selection), as a decoder node pays it once at start-up, not per frame.
    """
    size, low_size = synth.output_size, synth.lowres_size

    def frame(k, labels, low):
        rgb = synth(*model_inputs(labels, low, size, low_size), seed=seed + k)
        return to_camera(rgb, labels, low, synth.config) if camera_size else rgb

    if received.labels:
        synth.reset()
        frame(0, received.labels[0], received.lowres[0])
    synth.reset()
    out = []
    t0 = time.perf_counter()
    for k, (labels, low) in enumerate(zip(received.labels, received.lowres)):
        out.append(frame(k, labels, low))
        if progress:
            progress()
    dt = time.perf_counter() - t0
    return out, len(out) / dt if dt > 0 else float("inf")
