"""The operator's receive side, without ROS: two link streams in, one frame per frame index out.

The decoder node (wall-clock time) and ``system.transmit`` (simulated time) both feed packets to a
:class:`Receiver` and synthesize what it hands out, so the offline evaluation runs what the node
runs. A link loses, delays, reorders, duplicates and corrupts packets; the receiver

- holds each stream's packets in a small **jitter buffer** (at most ``jitter_frames`` frame
  indices, none longer than ``jitter_timeout_s``) so that a reordered packet is still used; only
  when the buffer is full or the missing packet is overdue are its frames counted lost;
- **claims a frame index only once a packet for it decodes**: a corrupt copy that arrives first is
  counted bad and dropped, and the good copy that follows is still decoded (the semantic decoder
  keeps its state when a packet fails, so nothing is reset by garbage);
- follows a **restarted** encoder (an index 50+ behind the last one) and drops **stale** packets
  (at or below the last claimed index);
- asks for a semantic I-frame / low-res keyframe after a loss or a bad packet, at most once per
  ``request_interval_s`` and stream (:meth:`Receiver.take_requests`); on a link that has lost
  semantic packets, as soon as a later packet shows a hole its copies do not fill, without the
  jitter buffer's wait;
- **acknowledges** decoded semantic frames (:meth:`Receiver.take_acks`, at most one per
  ``ack_interval_s``) with the share of semantic frames lost on the link over its last
  ``ACK_WINDOW`` frames, while that share is above zero (and once more when it falls to zero): the
  encoder then predicts P-frames from the newest frame acknowledged, so a loss costs that frame
  alone (reference picture selection); the codec keeps the frames it decoded, so a gap no longer
  resets it unless its 4-bit P-frame index could not see the gap;
- **pairs the low-res frame by frame index** (the newest decoded one at or before the frame, never
  "whatever arrived last"), waiting at most ``lowres_wait_s`` for it, because the low-res encoder
  skips frames and sends nothing for them;
- **splits redundancy bundles** (``codec.packet.unbundle``): a packet's copies of earlier packets
  stand in for frames whose own packets were lost (counted ``recovered``; such a frame still counts
  as lost on the link in the reported loss, which sizes the encoder's redundancy);
- **conceals**: a frame whose semantic packet is lost holds the last good label map;
- numbers frames from the stream's start (``Frame.seed_index``), the synthesizer's noise seed, so
  a replay of the same packets synthesizes the same frames;
- throttles its own warnings (one per kind per ``warn_interval_s``) and counts them.

``model_inputs`` resizes a frame to the synthesizer's input size and ``to_camera`` brings a
synthesized frame back to the camera's size: the one place the node and ``system.synthesize`` do
either.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np

from semcomm_ros.codec import LowResDecoder, SemanticDecoder
from semcomm_ros.codec.errors import BitstreamError
from semcomm_ros.codec.lowres import parse_header
from semcomm_ros.codec.packet import FrameLostError, unbundle
from semcomm_ros.codec.semantic.decoder import MAX_SHORT_GAP
from semcomm_ros.ranges import Range, check_ranges
from semcomm_ros.synth.upsample import to_camera as upsample

log = logging.getLogger(__name__)

SEMANTIC, LOWRES = "semantic", "lowres"
# KeyframeRequest.reason values (msg/KeyframeRequest.msg)
REASON_LOSS, REASON_CORRUPT, REASON_STARTUP = 0, 1, 2
#: Reordering on the link moves a frame by a few positions. A frame this far behind the last one
#: means the encoder restarted its count; this far ahead, an outage. Either jump is followed only
#: once a second packet confirms it (an index within JUMP_CONFIRM after it, within JUMP_MAX_AGE_S):
#: one stray packet with an absurd index -- garbage whose header happens to agree -- changes nothing.
RESTART_BACKJUMP = 50
JUMP_CONFIRM = 4
JUMP_MAX_AGE_S = 2.0
#: Copies of one frame index kept while waiting for one that decodes (duplicates on the link).
MAX_CANDIDATES = 3
#: Decoded low-res frames kept for pairing by index (a few seconds at 10 fps).
LOWRES_HISTORY = 32
#: Semantic frame indices the reported loss is counted over (10 s at 10 fps, RTCP's "fraction lost").
ACK_WINDOW = 100

COUNTERS = ("frames", "decoded", "lost", "stale", "duplicates", "reordered", "bad_packets",
            "waiting_for_keyframe", "keyframe_requests", "concealed", "restarts", "warnings",
            "warnings_suppressed", "acks", "recovered", "recovered_lowres")


@dataclass(frozen=True)
class ReceiverConfig:
    """The receive side's timing; ``RANGES`` is what each field accepts (the decoder node declares
    its parameters from it)."""

    jitter_frames: int = 3
    jitter_timeout_s: float = 0.3  # the link's reordering reaches 0.3 s
    lowres_wait_s: float = 0.3
    request_interval_s: float = 0.5
    warn_interval_s: float = 2.0
    # every other frame at 10 fps: the encoder's reference is then at most 0.1 s older than with an
    # acknowledgement a frame, for half the feedback
    ack_interval_s: float = 0.2

    RANGES = {
        "jitter_frames": Range("frame indices the jitter buffer holds behind a missing one before counting it "
                               "lost", 0, 64),
        "jitter_timeout_s": Range("longest a packet waits for a missing earlier one, s", 0.0, 60.0),
        "lowres_wait_s": Range("longest a frame waits for its low-res frame (the encoder skips some), s", 0.0, 60.0),
        "request_interval_s": Range("minimum time between keyframe requests per stream, s", 0.0, 60.0),
        "warn_interval_s": Range("minimum time between two warnings of one kind, s (the rest are counted)",
                                 0.0, 60.0),
        "ack_interval_s": Range("minimum time between two acknowledgements of decoded semantic frames, s (sent "
                                "while semantic frames are lost on the link)", 0.0, 60.0),
    }

    def __post_init__(self):
        check_ranges(self)

    def replace(self, **changes) -> "ReceiverConfig":
        """A new, validated config (ValueError with the reason)."""
        return dataclasses.replace(self, **changes)


@dataclass
class Request:
    """A keyframe request for the encoder (the ``keyframe_request`` topic)."""

    reason: int
    semantic: bool
    lowres: bool
    last_good_frame_index: int
    detail: str


@dataclass(frozen=True)
class Ack:
    """An acknowledgement for the encoder (the ``semantic_ack`` topic): the newest semantic frame
    decoded, which the encoder may predict its next P-frames from, and the loss the receiver sees."""

    frame_index: int
    fraction_lost: float  # semantic frames lost on the link over the last ``window_frames`` claimed
    window_frames: int


@dataclass
class Frame:
    """One frame for the synthesizer, in frame-index order."""

    index: int  # the encoder's frame index
    seed_index: int  # frames since the stream's start: the synthesizer's seed offset
    labels: np.ndarray | None  # decoded here, or the last good map held (None: none decoded yet)
    lowres: np.ndarray | None  # the newest low-res frame decoded at or before ``index``
    labels_new: bool  # the label map was decoded for this index (False: concealed)
    lowres_new: bool  # the low-res frame is this index's
    restart: bool  # first frame of a (new) stream: start the synthesizer afresh
    stamp_ns: int | None = None  # capture stamp of the semantic packet (None when it was lost)
    frame_id: str = ""
    t_labels: float = 0.0  # receiver clock: semantic index claimed
    t_ready: float = 0.0  # receiver clock: frame handed out

    @property
    def concealed(self) -> bool:
        return not (self.labels_new and self.lowres_new)


@dataclass
class _Claimed:
    """A semantic frame index claimed (decoded, waiting for an I-frame, or lost), waiting for its
    low-res frame before it is handed out as a :class:`Frame`."""

    index: int
    labels: np.ndarray | None  # the label map in force: decoded for this index, or the last good one held
    labels_new: bool
    stamp_ns: int | None
    frame_id: str
    t_labels: float


@dataclass
class _Packet:
    payload: bytes
    t_arrival: float
    stamp_ns: int | None
    frame_id: str
    copy: bool = False  # carried by a later frame's bundle: its own packet was lost on the link


@dataclass
class _Stream:
    """Index tracking and jitter buffer of one link stream."""

    name: str
    last: int | None = None  # highest index claimed (decoded, waiting for a keyframe, or lost)
    start: int | None = None  # first index claimed since the stream (re)started
    buffer: dict[int, list[_Packet]] = field(default_factory=dict)
    jumps: dict[int, _Packet] = field(default_factory=dict)  # packets far from ``last``, unconfirmed
    last_good: int | None = None
    last_request: float = -1e18

    def reset(self) -> None:
        self.last = self.start = self.last_good = None
        self.buffer.clear()
        self.jumps.clear()


class Receiver:
    """Both link streams in (``push_semantic`` / ``push_lowres``), frames out (``poll``).

    ``now`` is the caller's clock in seconds (monotonic wall time in the node, simulated time
    offline); nothing here reads a clock. ``logger``: anything with ``warning/info/debug`` (a
    ``logging.Logger`` or an rclpy logger).
    """

    def __init__(self, config: ReceiverConfig | None = None, logger=None):
        self.config = config or ReceiverConfig()
        self.logger = logger or log
        self.sem_dec, self.low_dec = SemanticDecoder(), LowResDecoder()
        self.sem, self.low = _Stream(SEMANTIC), _Stream(LOWRES)
        self.counts = dict.fromkeys(COUNTERS, 0)
        self._labels: np.ndarray | None = None  # last good label map (concealment)
        self._lowres: deque[tuple[int, np.ndarray]] = deque(maxlen=LOWRES_HISTORY)
        self._pending: deque[_Claimed] = deque()  # waiting for their low-res frame
        self._requests: list[Request] = []
        self._acks: list[Ack] = []
        self._last_ack = -1e18
        self._lost_window: deque[bool] = deque(maxlen=ACK_WINDOW)  # per semantic index claimed: lost on the link
        self._reported_loss = 0.0
        self._warned: dict[str, float] = {}
        self._restart = True

    # -- input ---------------------------------------------------------------------------------
    def push_semantic(self, index: int, payload: bytes, now: float, stamp_ns: int | None = None,
                      frame_id: str = "", copy_stamps_ns=()) -> None:
        """A SemanticFrame's payload (already checked against its message fields): one frame's
        packet, or a redundancy bundle whose copies stand in for earlier frames not received
        (``copy_stamps_ns``: their capture stamps, when the message carries them)."""
        def copies_at(index, parts):
            stamps = list(copy_stamps_ns) if len(copy_stamps_ns) == len(parts.copies) else [None] * len(parts.copies)
            # a bundle at the stream's start repeats frames before index 0: nothing to fill there
            return [(k, c, u) for k, c, u in zip(parts.copy_indices(index), parts.copies, stamps) if k >= 0]

        self._push_link(self.sem, int(index), payload, now, stamp_ns, frame_id, copies_at)

    def push_lowres(self, index: int, payload: bytes, now: float, stamp_ns: int | None = None,
                    frame_id: str = "") -> None:
        """A LowResFrame's payload; ``b""`` = the encoder skipped this frame (offline only: the node
        sends nothing for a skipped frame). A redundancy bundle's copy is an earlier low-res packet,
        placed by the index in its own header (the encoder skips frames)."""
        def copies_at(index, parts):
            out = []
            for copy in parts.copies:
                try:
                    hdr = parse_header(copy)
                except BitstreamError as exc:
                    self._bad(self.low, index, f"copy in a redundancy bundle: {exc}", now)
                    continue
                out.append((index - ((index - hdr["index"]) % (1 << 16 if hdr["key"] else 256)), copy, None))
            return out

        self._push_link(self.low, int(index), payload, now, stamp_ns, frame_id, copies_at)

    def _push_link(self, s: _Stream, index: int, payload: bytes, now: float, stamp_ns, frame_id, copies_at) -> None:
        """One link packet of stream ``s``: a frame's own packet, or a redundancy bundle whose copies
        (``copies_at(index, parts)`` -> [(frame index, copy, capture stamp)]) stand in for earlier
        frames not received."""
        try:
            parts = unbundle(payload)
        except BitstreamError as exc:
            self._bad(s, index, str(exc), now)
            return
        for k, copy, copy_stamp in copies_at(index, parts):
            # only a frame still open: one claimed or waiting in the buffer needs no copy (so a
            # copy is never counted stale or duplicate)
            if k < index and (s.last is None or k > s.last) and k not in s.buffer:
                self._push(s, k, copy, now, copy_stamp, frame_id, copy=True)
        self._push(s, index, parts.primary, now, stamp_ns, frame_id)

    def refuse(self, stream: str, index: int, reason: str, now: float) -> None:
        """A packet refused before decoding (its message fields contradict it): counted, and a
        fresh start asked for, as for any bad packet."""
        self._bad(self.sem if stream == SEMANTIC else self.low, int(index), reason, now)

    # -- output --------------------------------------------------------------------------------
    def poll(self, now: float) -> list[Frame]:
        """Frames complete by ``now``, in index order (call after pushes and periodically)."""
        self._drain(self.sem, now)
        self._drain(self.low, now)
        return self._release(now)

    def flush(self, now: float) -> list[Frame]:
        """End of input: every buffered packet is used, missing ones count lost, every claimed
        frame is handed out."""
        for s in (self.sem, self.low):
            self._drain(s, now, force=True)
        return self._release(now, force=True)

    def take_requests(self) -> list[Request]:
        out, self._requests = self._requests, []
        return out

    def take_acks(self) -> list[Ack]:
        out, self._acks = self._acks, []
        return out

    @property
    def fraction_lost(self) -> float:
        """Share of the last ``ACK_WINDOW`` semantic frame indices lost on the link."""
        return sum(self._lost_window) / len(self._lost_window) if self._lost_window else 0.0

    # -- streams -------------------------------------------------------------------------------
    def _push(self, s: _Stream, index: int, payload: bytes, now: float, stamp_ns, frame_id,
              copy: bool = False) -> None:
        if s.last is not None and not -RESTART_BACKJUMP < index - s.last <= RESTART_BACKJUMP:
            if not copy:  # a copy's frame follows its carrier's: the carrier alone confirms a jump
                self._jump(s, index, _Packet(payload, now, stamp_ns, frame_id), now)
            return
        if s.last is not None and index <= s.last:
            self.counts["stale"] += 1
            self.logger.debug(f"stale {s.name} frame {index} (last {s.last}) dropped")
            return
        copies = s.buffer.get(index, [])
        if any(c.payload == payload for c in copies) or len(copies) >= MAX_CANDIDATES:
            self.counts["duplicates"] += 1
            return
        if s.buffer and index < max(s.buffer):
            self.counts["reordered"] += 1  # overtaken on the link, still in time to be used
        s.buffer[index] = copies
        copies.append(_Packet(payload, now, stamp_ns, frame_id, copy))
        self._drain(s, now)

    def _jump(self, s: _Stream, index: int, packet: _Packet, now: float) -> None:
        """A packet far from the stream's position: follow it once another one confirms it."""
        s.jumps = {k: p for k, p in s.jumps.items() if now - p.t_arrival <= JUMP_MAX_AGE_S and k != index}
        s.jumps[index] = packet
        confirmed = sorted(k for k in s.jumps if abs(k - index) <= JUMP_CONFIRM)
        if len(confirmed) < 2:
            self.logger.debug(f"{s.name} frame {index} far from {s.last}: held until another confirms it")
            return
        jumps, last = dict(s.jumps), s.last
        if index < last:
            self._warn(f"{s.name}-restart", f"{s.name} frame {index} after {last}: stream restarted", now)
            self.counts["restarts"] += 1
            self._restart_stream(s)
        else:
            self._warn(f"{s.name}-jump", f"{s.name} stream jumped from frame {last} to {confirmed[0]}", now)
            if s is self.sem:
                self.counts["lost"] += confirmed[0] - last - 1
                self.sem_dec.reset()
            s.buffer.clear()
            s.last = confirmed[0] - 1
        s.jumps = {}
        for k in confirmed:
            p = jumps[k]
            self._push(s, k, p.payload, p.t_arrival, p.stamp_ns, p.frame_id)
        self._drain(s, now)

    def _restart_stream(self, s: _Stream) -> None:
        s.reset()
        if s is self.sem:
            # a new stream: new numbering, new seeds, nothing held from the old one
            self.sem_dec.reset()
            self._labels = None
            self._pending.clear()
            self._restart = True
            self.low.reset()
            self._lowres.clear()
        else:
            self._lowres.clear()

    def _ready(self, s: _Stream, index: int) -> bool:
        """May ``index`` (the lowest buffered) be decoded now, with nothing missing before it?"""
        if s.last is None or index == s.last + 1:
            return True
        if s is self.low:
            # a delta frame names its reference (index - gap); skipped frames were never sent
            copy = s.buffer[index][0]
            if not copy.payload:
                return False
            try:
                hdr = parse_header(copy.payload)
            except BitstreamError:
                return True  # decoding it reports the damage
            return hdr["key"] or index - hdr["gap"] <= s.last
        return False

    def _drain(self, s: _Stream, now: float, force: bool = False) -> None:
        while s.buffer:
            index = min(s.buffer)
            if not self._ready(s, index):
                oldest = min(c.t_arrival for copies in s.buffer.values() for c in copies)
                if not (force or len(s.buffer) > self.config.jitter_frames
                        or now - oldest >= self.config.jitter_timeout_s):
                    if s is self.sem and self.fraction_lost > 0 and s.last_good is not None:
                        # a link that loses packets: the hole is more likely lost than late, so the
                        # recovery is asked for now, not after the jitter buffer's wait (it costs a
                        # P-frame from an older reference when the packet was only reordered)
                        self._request(s, REASON_LOSS, f"semantic frame {s.last + 1} missing", now)
                    return
                self._gap(s, index, now)
            for packet in s.buffer.pop(index):
                if self._decode(s, index, packet, now):
                    break
            # no copy decoded: the index stays open for a good copy (or the jitter buffer gives up)

    def _gap(self, s: _Stream, index: int, now: float) -> None:
        if s is self.sem:
            gap = index - s.last - 1
            self.counts["lost"] += gap
            self._warn("semantic-lost", f"{gap} semantic frame(s) lost before frame {index}", now)
            if gap > MAX_SHORT_GAP:
                # a short P-frame's 4-bit index cannot see this gap (16 would look seamless): start
                # afresh; shorter gaps the codec sees itself, and it keeps the frames it may still
                # be asked to predict from
                self.sem_dec.reset()
            self._lost_window.extend([True] * min(gap, ACK_WINDOW))
            for k in range(s.last + 1, index):
                self._claim_semantic(k, None, None, "", now)
            if s.last_good is not None and self.sem_dec.holds(self.sem_dec.last_index):
                # at once, whatever the interval: the P-frames on their way extend the lost frame,
                # and the encoder can predict from this one within a round trip
                self._ack(s.last_good, now, force=True)
        s.last = index - 1  # the low-res decoder finds its own gaps (each delta frame names its reference)

    def _decode(self, s: _Stream, index: int, packet: _Packet, now: float) -> bool:
        """Decode one copy; True when ``index`` is claimed by it."""
        startup = s.last_good is None
        try:
            value = (self.sem_dec if s is self.sem else self.low_dec).decode(packet.payload)
        except FrameLostError as exc:  # a sound P-frame without its reference: claimed, unusable
            self._claim(s, index, now)
            self._lost_window.append(packet.copy)  # arrived (its own packet, or lost and repeated)
            if s.last_good is not None and self.sem_dec.holds(self.sem_dec.last_index):
                self._ack(s.last_good, now, force=True)  # what it holds, whatever the encoder believes
            self.counts["waiting_for_keyframe"] += 1
            self.logger.debug(f"semantic frame {index}: {exc}")
            if not packet.copy:  # a copy's carrier is decoded next, and asks itself if it fails too
                self._request(s, REASON_STARTUP if startup else REASON_LOSS, str(exc), now)
            self._claim_semantic(index, None, packet.stamp_ns, packet.frame_id, now)
            return True
        except BitstreamError as exc:
            self._bad(s, index, str(exc), now)
            return False
        self._claim(s, index, now)
        if s is self.sem:
            # a frame decoded from a copy was still lost on the link: the encoder sizes its
            # redundancy from that loss, not from what is left after the repair
            self._lost_window.append(packet.copy)
            self._ack(index, now)
            s.last_good = index
            self.counts["decoded"] += 1
            self.counts["recovered"] += packet.copy
            self._labels = value
            self._claim_semantic(index, value, packet.stamp_ns, packet.frame_id, now)
        elif value is not None:
            s.last_good = index
            self._lowres.append((index, value))
            self.counts["recovered_lowres"] += packet.copy
        elif self.low_dec.needs_keyframe:
            self.counts["waiting_for_keyframe"] += 1
            self._request(s, REASON_STARTUP if startup else REASON_LOSS,
                          f"low-res frame {index}: waiting for a keyframe", now)
        return True

    def _claim(self, s: _Stream, index: int, now: float) -> None:
        if s.start is None:
            s.start = index
        s.last = index

    def _bad(self, s: _Stream, index: int, reason: str, now: float) -> None:
        self.counts["bad_packets"] += 1
        self._warn(f"{s.name}-bad", f"bad {s.name} frame {index}: {reason}", now)
        self._request(s, REASON_CORRUPT, f"{s.name} frame {index}: {reason}", now)

    def _ack(self, index: int, now: float, force: bool = False) -> None:
        loss = self.fraction_lost
        quiet = loss == 0 and self._reported_loss == 0
        if not force and (quiet or now - self._last_ack < self.config.ack_interval_s):
            return
        self._last_ack = now
        self._reported_loss = loss
        self.counts["acks"] += 1
        self._acks.append(Ack(index, loss, len(self._lost_window)))

    def _request(self, s: _Stream, reason: int, detail: str, now: float) -> None:
        if now - s.last_request < self.config.request_interval_s:
            return
        s.last_request = now
        self.counts["keyframe_requests"] += 1
        self._requests.append(Request(reason, s is self.sem, s is self.low,
                                      int(self.sem.last_good or 0), detail[:200]))

    def _warn(self, key: str, message: str, now: float) -> None:
        self.counts["warnings"] += 1
        if now - self._warned.get(key, -1e18) < self.config.warn_interval_s:
            self.counts["warnings_suppressed"] += 1
            return
        self._warned[key] = now
        self.logger.warning(message)

    # -- frames --------------------------------------------------------------------------------
    def _claim_semantic(self, index: int, labels, stamp_ns, frame_id: str, now: float) -> None:
        self._pending.append(_Claimed(index=index, labels=self._labels, labels_new=labels is not None,
                                      stamp_ns=stamp_ns, frame_id=frame_id, t_labels=now))

    def _release(self, now: float, force: bool = False) -> list[Frame]:
        out = []
        while self._pending:
            p = self._pending[0]
            k = p.index
            lowres_done = self.low.last is not None and self.low.last >= k
            semantic_moved_on = self.sem.last is not None and self.sem.last > k
            if not (force or lowres_done or semantic_moved_on or now - p.t_labels >= self.config.lowres_wait_s):
                break
            self._pending.popleft()
            lowres = [(i, f) for i, f in self._lowres if i <= k]
            low_index, low = lowres[-1] if lowres else (None, None)
            f = Frame(index=k, seed_index=k - self.sem.start, labels=p.labels, lowres=low,
                      labels_new=p.labels_new, lowres_new=low_index == k, restart=self._restart,
                      stamp_ns=p.stamp_ns, frame_id=p.frame_id, t_labels=p.t_labels, t_ready=now)
            self._restart = False
            self.counts["frames"] += 1
            self.counts["concealed"] += f.concealed
            out.append(f)
        return out


# -- sizes ---------------------------------------------------------------------------------------
def model_inputs(labels: np.ndarray, lowres: np.ndarray | None, size: tuple[int, int],
                 lowres_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None]:
    """A frame at the synthesizer's input size (``size`` = (h, w) of its output, ``lowres_size`` of
    its degraded input): labels by nearest neighbour (ids stay ids), the low-res frame by area
    averaging (what the model's lowres_factor expects)."""
    h, w = size
    if labels.shape != (h, w):
        labels = cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST)
    if lowres is not None:
        lh, lw = lowres_size
        if lowres.shape[:2] != (lh, lw):
            lowres = cv2.resize(lowres, (lw, lh), interpolation=cv2.INTER_AREA)
    return labels, lowres


def to_camera(frame: np.ndarray, labels: np.ndarray, lowres: np.ndarray | None = None, config=None) -> np.ndarray:
    """A synthesized frame at the camera's size, which is the decoded label map's: label-guided
    upsampling (``synth.upsample.to_camera``: edges from the full-resolution label map), with the
    data-consistency step toward the received frame that the model's ``SynthConfig`` asks for."""
    H, W = labels.shape
    if frame.shape[:2] == (H, W):
        return frame
    if H < frame.shape[0] or W < frame.shape[1]:  # a camera smaller than the model: nothing to guide
        return cv2.resize(frame, (W, H), interpolation=cv2.INTER_AREA)
    if config is None or lowres is None:
        return upsample(frame, labels, lowres)
    return upsample(frame, labels, lowres, consistency=config.consistency,
                    consistency_objects=config.consistency_objects)
