"""The whole chain without ROS: robot side -> constrained link -> operator side.

``transmit`` runs the robot side on a clip: segmentation, then the encoder node's own
:class:`~semcomm_ros.sender.Sender` (both encoders, held together to the link's rate by its rate
controller, keyframe requests honoured as the node honours them); ``Session`` pushes both packet
streams through a :class:`~semcomm_ros.link.SimulatedLink` in simulated time and hands them to
the operator's :class:`~semcomm_ros.receiver.Receiver`, the one the decoder node runs (jitter
buffer, loss -> hold the last frame and ask for a refresh, low-res paired by index).
``synthesize`` then runs the causal synthesizer over what arrived.
The demo and the Table II evaluation share these two steps, so ablations reuse one transmission.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from semcomm_ros.codec.packet import frame_bits
from semcomm_ros.link import DeliveryWindow, LinkParams, SimulatedLink
from semcomm_ros.receiver import Ack, Frame, Receiver, model_inputs, to_camera
from semcomm_ros.sender import Sender, SenderConfig, Sent

log = logging.getLogger(__name__)


@dataclass
class ChainConfig:
    fps: float = SenderConfig.fps
    # semantic codec (paper IV-A): our "tracked" profile by default, "paper" for the exact scheme
    xi: float | None = None  # None: the profile's default (paper 6 px, P=4; tracked 4 px, P=32)
    period: int | None = None
    q_symbols: int = SenderConfig.q_symbols
    profile: str = SenderConfig.profile
    # low-res stream (paper V-C)
    # the low-res stream's share of link_kbps under the rate controller (its rate when fixed): a
    # 4 s clip pays its first keyframe (~1 kbit) within it, and 0.7 of 2 kbps leaves the semantic
    # stream its ~1 kbps
    lowres_kbps: float = 0.7
    lowres_scale: int = SenderConfig.lowres_scale
    lowres_codec: str = SenderConfig.lowres_codec
    # the link both streams share
    link_kbps: float = 2.0  # 0: unlimited
    # hold both streams together to link_kbps with the robot's rate controller (the encoder
    # node's), lowres_kbps / link_kbps of it for the low-res stream: a short clip then stays
    # within the link's rate from its first second. False: xi and lowres_kbps fixed (RD sweeps)
    rate_control: bool = True
    target_kbps: float | None = None  # the rate controller's target; None: link_kbps
    latency_ms: float = 0.0
    loss_rate: float = 0.0
    reorder_rate: float = 0.0
    # the decoder's feedback (keyframe requests, acknowledgements) back to the encoder; 0 as over
    # DDS through the link emulator, which does not relay it
    feedback_latency_ms: float = 0.0
    seed: int = 0

    def sender_config(self) -> SenderConfig:
        """The robot's configuration for this chain (the encoder node's parameters)."""
        target = self.link_kbps if self.target_kbps is None else self.target_kbps
        control = self.rate_control and target > 0
        share = min(max(self.lowres_kbps / target, 0.05), 0.95) if control else SenderConfig.lowres_share
        return SenderConfig(profile=self.profile, xi=self.xi, period=self.period, q_symbols=self.q_symbols,
                            lowres_kbps=self.lowres_kbps, lowres_scale=self.lowres_scale,
                            lowres_codec=self.lowres_codec, target_kbps=target if control else 0.0,
                            lowres_share=share, fps=self.fps)


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


class Session:
    """Robot side -> simulated link -> operator's Receiver, one camera frame at a time, in
    simulated time: what the five nodes do over DDS, without ROS.

    Every packet is handed to the Receiver at its own arrival time, and the decoder node's
    feedback reaches the encoder as it does live: keyframe requests (``keyframe_request``) and
    acknowledgements (``semantic_ack``), ``feedback_latency_ms`` after they were sent, each
    decoded frame's capture -> decoded latency (``diagnostics``) and, once a second, the rate
    delivered over the link emulator's window (``link_stats_rx``). ``step`` returns the frames
    the Receiver handed out up to the new frame's capture; ``finish`` drains the link.
    """

    def __init__(self, cfg: ChainConfig):
        self.cfg = cfg
        self.sender = Sender(cfg.sender_config())
        self.link = SimulatedLink(LinkParams(bandwidth_kbps=cfg.link_kbps, latency_ms=cfg.latency_ms,
                                             loss_rate=cfg.loss_rate, reorder_rate=cfg.reorder_rate), seed=cfg.seed)
        self.receiver = Receiver(logger=log)
        self.sent: list[Sent] = []  # per frame index
        self.arrived: set[tuple[str, int]] = set()
        self.delivered = DeliveryWindow()  # the link emulator's link_stats_rx
        self._next_feedback = 1.0
        self._feedback: deque[tuple[float, object]] = deque()  # (due, Request or Ack) on its way back
        self.feedback_sent = {"requests": 0, "acks": 0}
        self._t = 0.0

    def _deliver(self, t: float, end: bool = False) -> list[Frame]:
        self._t = t
        for stream, k, packet in self.link.receive(t):
            self.arrived.add((stream, k))
            self.delivered.add(t, stream, frame_bits(packet))
            (self.receiver.push_semantic if stream == "semantic" else self.receiver.push_lowres)(k, packet, t)
        out = self.receiver.flush(t) if end else self.receiver.poll(t)
        for f in out:
            if ("semantic", f.index) in self.arrived:  # as the node: no capture stamp, no latency
                self.sender.on_latency(t, f.t_ready - f.index / self.cfg.fps)
        delay = self.cfg.feedback_latency_ms / 1000.0
        for item in [*self.receiver.take_requests(), *self.receiver.take_acks()]:
            self._feedback.append((t + delay, item))
            self.feedback_sent["acks" if isinstance(item, Ack) else "requests"] += 1
        while self._feedback and self._feedback[0][0] <= t:
            item = self._feedback.popleft()[1]
            if isinstance(item, Ack):
                self.sender.acknowledge(t, item.frame_index, item.fraction_lost)
            else:
                self.sender.request(t, item.semantic, item.lowres, item.last_good_frame_index)
        if t >= self._next_feedback:
            kbps, span, _ = self.delivered.rates(t)
            self.sender.on_delivered(t, sum(kbps.values()), span)
            self._next_feedback = t + 1.0
        return out

    def _until(self, t: float) -> list[Frame]:
        out = []
        while True:
            due = [a for a in (self.link.next_arrival(), self._feedback[0][0] if self._feedback else None)
                   if a is not None and a <= t]
            if not due:
                break
            out += self._deliver(max(min(due), self._t))
        return out + self._deliver(max(t, self._t))

    def step(self, rgb: np.ndarray, labels: np.ndarray) -> list[Frame]:
        """Capture, code and send the next frame; the frames handed out meanwhile."""
        k = len(self.sent)
        t = k / self.cfg.fps
        out = self._until(t)
        sent = self.sender.encode(rgb, labels, t)
        if self.sender.low is False:  # the node runs on without it; a clip without it measures nothing
            raise ValueError(self.sender.low_error)
        self.link.send(t, ("semantic", k, sent.semantic), len(sent.semantic))
        self.link.send(t, ("lowres", k, sent.lowres), len(sent.lowres))
        self.sent.append(sent)
        return out + self._deliver(t)

    def finish(self) -> list[Frame]:
        """End of the clip: the encoder closed, everything in flight delivered, the rest flushed."""
        self.sender.close()  # SVT-AV1 wants its end of stream; the other codecs have nothing pending
        out = self._until(len(self.sent) / self.cfg.fps)
        while (a := self.link.next_arrival()) is not None:
            out += self._deliver(max(a, self._t))
        return out + self._deliver(self._t, end=True)


def transmit(frames_rgb, segment, cfg: ChainConfig, progress=None) -> Received:
    """Robot side + link + decoders over a whole clip (list of HxWx3 uint8 frames).

    ``segment``: rgb -> uint8 label map (the robot's segmenter). ``progress``: an optional
    callable invoked once per frame (e.g. a tqdm ``update``).
    """
    if not frames_rgb:
        raise ValueError("transmit needs at least one frame")
    h, w = frames_rgb[0].shape[:2]
    n = len(frames_rgb)
    session = Session(cfg)
    got: dict[int, Frame] = {}
    for rgb in frames_rgb:
        got.update((f.index, f) for f in session.step(rgb, segment(rgb)))
        if progress:
            progress()
    got.update((f.index, f) for f in session.finish())
    sem_bits = [frame_bits(s.semantic) for s in session.sent]
    low_bits = [frame_bits(s.lowres) for s in session.sent]
    receiver, link = session.receiver, session.link

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
