"""``SemanticEncoder``: label maps to packets; the I/P decision, the reference each P-frame is
predicted from (the previous frame, or the newest one the decoder acknowledged) and the closed
loop, then the profile's writer."""

from __future__ import annotations

import numpy as np

from semcomm_ros.codec import entropy as ent
from semcomm_ros.codec.contours import extract_regions, simplify
from semcomm_ros.codec.packet import FRAME_I, FRAME_P, MAX_Q, MAX_REFERENCE, MAX_SIDE, PROFILES, FrameHeader, pack
from semcomm_ros.codec.semantic import intra
from semcomm_ros.codec.semantic.decoder import SemanticDecoder
from semcomm_ros.codec.semantic.profiles import CODERS, PROFILE_DEFAULTS

#: with ``speculate``: a P-frame predicted from the acknowledged frame re-sends every contour coded
#: since (a new object, an intra refresh) until a frame holding it is acknowledged. One predicted
#: from a frame anchored on it (lost whenever that frame was) is taken instead when it re-sends fewer
#: contours and saves this many bits, about a contour vertex or two, and this share of them
SPECULATE_BITS = 24
SPECULATE_SHARE = 0.4
#: recoveries sent from one reported frame before the next report of it gets an I-frame: at 10 %
#: loss one recovery in ten is lost, and a second one (tens of bits) still beats an I-frame
#: (hundreds, and 0.4-0.9 s of a 2 kbps link); a forged report then costs one P-frame more
RECOVERY_TRIES = 2


def _contours(counts: dict) -> int:
    """Contours a P-frame (re-)sends: new instances and intra refreshes (the tracked profile's)."""
    return counts.get("new", 0) + counts.get("intra", 0)


class SemanticEncoder:
    """``encode(labels) -> bytes`` for one frame of a 2-D uint8 class map.

    Parameters (attributes; may change between frames, or use ``set_params``): ``xi`` line
    simplification tolerance (px), ``period`` I-frame period P, ``q_symbols`` Q, ``profile``
    ("paper" or "tracked"). A change of Q, profile or frame size makes the next frame an I-frame
    (the decoder learns them from I-frames); xi and P act from the next frame on.
    ``xi`` / ``period`` left at None take the profile's defaults (PROFILE_DEFAULTS): the paper's
    xi = 6, P = 4, or the tracked profile's xi = 4, P = 32.
    Tracked-profile knobs: ``keep_slack`` / ``update_slack`` (IoU an instance may lose against its
    intra refresh before its pose is corrected / before it is re-sent as a new contour; default
    0.14 each).

    Reference picture selection: ``acknowledge(index)`` records that the decoder decoded frame
    ``index``; with ``predict_from_acked`` set, each P-frame is predicted from the newest frame
    acknowledged (if it is at most ``MAX_REFERENCE`` frames back and coded under the same
    profile, Q and size), so a lost packet costs the decoder that frame alone instead of every
    frame up to the next I-frame; with no acknowledged frame usable, from the newest frame anchored
    on one (predicted from it, or an I-frame), else the previous frame. With ``speculate`` too, an
    anchored frame is taken over the acknowledged one when it saves ``SPECULATE_SHARE`` of the bits.
    Without ``predict_from_acked`` (the default) a P-frame extends the previous frame.
    """

    def __init__(
        self,
        xi: float | None = None,
        period: int | None = None,
        q_symbols: int = 256,
        profile: str = "paper",
        keep_slack: float | None = None,
        update_slack: float | None = None,
    ) -> None:
        if profile not in PROFILES:
            raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
        defaults = PROFILE_DEFAULTS[profile]
        self.xi = defaults["xi"] if xi is None else xi
        self.period = defaults["period"] if period is None else period
        self.q_symbols = q_symbols
        self.profile = profile
        self.keep_slack = defaults["keep_slack"] if keep_slack is None else keep_slack
        self.update_slack = defaults["update_slack"] if update_slack is None else update_slack
        self.frame_index = 0  # index of the next frame (full, not modulo 256)
        self.last_frame_type: str | None = None
        self.stats = {"I": 0, "P": 0, "forced_I": 0, "keep": 0, "update": 0, "intra": 0, "drop": 0, "new": 0,
                      "move": 0}
        self._force = True
        self._since_i = 0
        # the I-frame period in force instead of ``period`` (0: none), set by a caller that knows
        # the decoder asks for an I-frame when it needs one (sender.SenderConfig.loss_period)
        self.period_override: int | None = None
        self.predict_from_acked = False
        # also weigh a frame anchored on an acknowledged one against the acknowledged frame itself
        # (docs/semantic_codec.md: fewer bits, more frames lost with their reference)
        self.speculate = False
        self.last_reference = 0  # frames back the last P-frame was predicted from (0: an I-frame)
        # the decoder's ring, decoded here too (closed loop): every frame's state under its index
        self._mirror = SemanticDecoder()
        self._sent: tuple | None = None  # (profile, Q, H, W) of the last I-frame
        # per frame index still in the ring: its (profile, Q, H, W), what the profile kept from the
        # I-frame it descends from for its P-frames, and the frame it was predicted from (None: an I-frame)
        self._coded: dict[int, tuple[tuple, object, int | None]] = {}
        self._acked: int | None = None  # newest frame index the decoder acknowledged
        self._acked_all: set[int] = set()  # every acknowledgement taken, of frames still in the ring
        self._ack_floor = 0  # acknowledgements of frames before this one are no longer trusted
        self._suspect = -1  # frames after this one, sent before a refusal, are no anchors
        self._refused_at = -1  # frame index when that refusal was reported
        self._recover: int | None = None  # the next P-frame's reference, once (``recover_from``)
        self._recovered: tuple[int, int] | None = None  # (frame recovered from, recoveries sent from it)
        self._validate()

    def _validate(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"profile must be one of {PROFILES}, got {self.profile!r}")
        if not (2 <= int(self.q_symbols) <= MAX_Q):
            raise ValueError(f"q_symbols must be in [2, {MAX_Q}], got {self.q_symbols}")
        if not (1 <= int(self.period) <= 255):
            raise ValueError(f"period must be in [1, 255], got {self.period}")
        if not (0 <= float(self.xi) <= 63.75):
            raise ValueError(f"xi must be in [0, 63.75] px, got {self.xi}")

    def set_params(self, **params) -> None:
        for k, v in params.items():
            if k not in ("xi", "period", "q_symbols", "profile", "keep_slack", "update_slack"):
                raise ValueError(f"unknown parameter {k!r}")
            setattr(self, k, v)
        self._validate()

    def force_iframe(self) -> None:
        """Make the next frame an I-frame (e.g. on a keyframe request after loss). Acknowledgements
        so far are forgotten: the decoder asked because it lacks a reference, so what it
        acknowledged is no longer trusted (a forged or stale one costs a refresh, never a wrong
        map)."""
        self._force = True
        self._acked = None
        self._acked_all.clear()
        self._ack_floor = self.frame_index

    def acknowledge(self, index: int) -> bool:
        """The decoder decoded frame ``index`` (the encoder's count, ``frame_index`` at its
        encode). Acknowledgements of frames never sent, older than the newest one, or from before
        the last forced I-frame are ignored; returns whether this one was taken."""
        index = int(index)
        if not self._ack_floor <= index < self.frame_index or (self._acked is not None and index <= self._acked):
            return False
        self._acked = index
        self._acked_all.add(index)
        return True

    def needs_refresh(self, last_good: int | None) -> bool:
        """Whether a decoder that refused a P-frame and reports ``last_good`` (its newest frame
        decoded) needs an I-frame: not when it decoded the acknowledged frame the next P-frame is
        predicted from (it refused one predicted from a newer frame it lost, ``speculate``)."""
        usable = self._acked is not None and self.frame_index - self._acked < MAX_REFERENCE
        if last_good is not None:
            # the refused frame was predicted from one the decoder lost: no frame after its newest
            # decoded one is an anchor any more (until acknowledged)
            self._suspect, self._refused_at = int(last_good), self.frame_index
        return not (self.predict_from_acked and usable and last_good is not None and last_good >= self._acked)

    def recover_from(self, last_good: int) -> bool:
        """A decoder lost its chain and reports ``last_good``, the newest frame it decoded: predict
        the next P-frame from that frame (one long-form P-frame, tens of bits) instead of a whole
        I-frame (hundreds), if the encoder still holds it under the same parameters. Refused --
        returns False, and the caller sends an I-frame -- when it does not, when a recovery from a
        newer frame was sent already, or when ``RECOVERY_TRIES`` recoveries from this frame were
        sent and the decoder still reports it (those packets were lost too, or the decoder lacks
        the frame: a stale or forged report costs an I-frame, never a wrong map)."""
        last_good = int(last_good)
        d = self.frame_index - last_good
        key = self._coded.get(last_good, (None,))[0]
        if self._recovered is not None and (self._recovered[0] > last_good or
                                            self._recovered == (last_good, RECOVERY_TRIES)):
            return False
        if not (1 <= d < MAX_REFERENCE and key is not None and key == self._sent and not self._force):
            return False
        self._recover = last_good
        return True

    @property
    def acked(self) -> int | None:
        """The newest frame index acknowledged (None: none since the last forced I-frame)."""
        return self._acked

    def encode(self, labels: np.ndarray) -> bytes:
        labels = np.asarray(labels)
        if labels.ndim != 2 or labels.dtype != np.uint8:
            raise ValueError(f"labels must be a 2-D uint8 class map, got {labels.dtype} {labels.shape}")
        h, w = labels.shape
        if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
            raise ValueError(f"label map size {w}x{h} outside 1..{MAX_SIDE}")
        self._validate()
        key = (self.profile, int(self.q_symbols), h, w)
        period = int(self.period if self.period_override is None else self.period_override)
        iframe = self._force or self._sent != key or 0 < period <= self._since_i
        packet = None
        if not iframe:
            packet = self._encode_p(labels)
            if packet is None:
                self.stats["forced_I"] += 1
                iframe = True
        if iframe:
            packet = self._encode_i(labels)
            self._sent = key
            self._force = False
            self._since_i = 0
        self._mirror.decode(packet)  # closed loop: the encoder predicts from what the decoder has
        if iframe:
            self.last_reference = 0
        if self._recover is not None:
            tries = self._recovered[1] if self._recovered and self._recovered[0] == self._recover else 0
            self._recovered = (self._recover, tries + 1) if not iframe else None
            self._recover = None
        self._coded[self.frame_index] = (key, self._reference, self.frame_index - self.last_reference
                                         if self.last_reference else None)
        for k in [k for k in self._coded if not self._mirror.holds(k)]:
            del self._coded[k]
        self._acked_all &= self._coded.keys()
        self._since_i += 1
        self.frame_index += 1
        self.last_frame_type = "I" if iframe else "P"
        self.stats[self.last_frame_type] += 1
        return packet

    def reconstruction(self) -> np.ndarray:
        """The label map the decoder shows after the last packet (the encoder's closed-loop copy)."""
        return self._mirror._state.render()

    def _encode_i(self, labels: np.ndarray) -> bytes:
        h, w = labels.shape
        canvas, regions = extract_regions(labels)
        wr = ent.SymbolWriter()
        intra.write_frame_head(wr, canvas, len(regions))
        hdr = FrameHeader(self.frame_index & 0xFF, FRAME_I, profile=self.profile, height=h, width=w,
                          q_symbols=int(self.q_symbols))
        coder = CODERS[self.profile]
        coder.write_iframe(wr, hdr, [(r.label, simplify(r.contour, float(self.xi)), None) for r in regions])
        self._reference = coder.iframe_reference(labels, canvas)
        return pack(FRAME_I, self.frame_index, wr.finish(), profile=self.profile, height=h, width=w,
                    q_symbols=int(self.q_symbols), xi=float(self.xi), period=int(self.period))

    def _references(self, key: tuple) -> list[int]:
        """Frames back a P-frame may be predicted from, safest first: the newest frame acknowledged;
        the newest frame anchored on an acknowledged one (predicted from it, or an I-frame: it
        decodes whenever it arrived, so a frame predicted from it is lost only with it); the
        previous frame. Without ``predict_from_acked``: the previous frame alone."""
        def usable(index):
            return index is not None and 1 <= self.frame_index - index <= MAX_REFERENCE and \
                self._coded.get(index, (None,))[0] == key

        if self._recover is not None:
            # the decoder holds this frame and nothing after it: the only safe reference
            return [self.frame_index - self._recover] if usable(self._recover) else []
        out = []
        if self.predict_from_acked:
            if usable(self._acked) and self.frame_index - self._acked > 1:
                out.append(self._acked)
            anchored = [j for j, (_, _, ref) in self._coded.items()
                        if (self._acked is None or j > self._acked) and usable(j)
                        and (ref is None or ref in self._acked_all) and not self._suspect < j < self._refused_at]
            if anchored:
                out.append(max(anchored))
        if usable(self.frame_index - 1) and self.frame_index - 1 not in out:
            out.append(self.frame_index - 1)
        return [self.frame_index - j for j in out]

    def _encode_p(self, labels: np.ndarray) -> bytes | None:
        h, w = labels.shape
        key = (self.profile, int(self.q_symbols), h, w)
        coder = CODERS[self.profile]
        best = None
        for d in self._references(key):
            index = self.frame_index - d
            st = coder.extrapolate(self._mirror._ring[index], d - 1)
            ref = self._coded[index][1]
            payload, counts = coder.write_pframe(labels, st, ref, self.xi, self.keep_slack, self.update_slack)
            if payload is None:
                continue  # the paper profile: a class appeared since that frame; an I-frame if none is left
            packet = pack(FRAME_P, self.frame_index, payload, reference=d)
            saved = len(best[0]) - len(packet) if best else 0
            if best is None or (_contours(best[1]) > _contours(counts)
                                and saved >= max(SPECULATE_BITS / 8, SPECULATE_SHARE * len(best[0]))):
                best = (packet, counts, ref, d)
            if not self.speculate or not _contours(counts):
                break  # the safest reference that codes the frame; or one that re-sends no contour
        if best is None:
            return None
        packet, counts, self._reference, self.last_reference = best
        for mode, n in counts.items():
            self.stats[mode] += n
        return packet
