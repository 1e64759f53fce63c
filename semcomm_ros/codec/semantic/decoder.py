"""``SemanticDecoder``: packets back to label maps; loss and order checks, the ring of decoded
frames P-frames are predicted from, then the profile's reader."""

from __future__ import annotations

import copy

import numpy as np

from semcomm_ros.codec import entropy as ent
from semcomm_ros.codec.errors import BitstreamError
from semcomm_ros.codec.packet import (
    MAX_Q,
    MAX_REFERENCE,
    MAX_SIDE,
    FrameHeader,
    FrameLostError,
    parse_header,
    payload_of,
)
from semcomm_ros.codec.semantic import intra
from semcomm_ros.codec.semantic.profiles import CODERS
from semcomm_ros.codec.semantic.state import State

#: a short P-frame's 4-bit index tells a gap of 1..8 frames from a packet 9..15 frames behind
MAX_SHORT_GAP = 8
#: a long P-frame's or an I-frame's 8-bit index: up to 127 frames ahead, the rest behind
MAX_LONG_GAP = 127


class SemanticDecoder:
    """``decode(packet) -> labels``. Loss behaviour: raises ``FrameLostError`` (a BitstreamError).

    The decoder keeps the frames it decoded over the last ``MAX_REFERENCE`` frame indices (the
    *ring*), each under its frame index as the encoder counts it (unwrapped from the packets'
    8-bit / 4-bit indices). A P-frame names the frame it is predicted from (the previous one, or
    one up to ``MAX_REFERENCE`` back: reference picture selection); one whose reference is not in
    the ring -- lost, refused itself, or never decoded -- raises FrameLostError ("... waiting for
    the next I-frame") and changes nothing, so a later P-frame predicted from a frame the decoder
    holds decodes again, and an I-frame always does. A packet at or before the newest frame
    decoded raises BitstreamError ("out of order") and leaves the state untouched.
    """

    def __init__(self) -> None:
        self._ring: dict[int, State] = {}  # frame index (unwrapped) -> the state after it
        self._newest: int | None = None  # index of the newest frame decoded or refused
        self._state: State | None = None  # the state after that frame
        self.last_header: FrameHeader | None = None
        self.last_index: int | None = None  # unwrapped index of the last frame decoded
        self.waiting_for_iframe = True

    def reset(self) -> None:
        self._ring.clear()
        self._newest = None
        self._state = None
        self.waiting_for_iframe = True

    def holds(self, index: int) -> bool:
        """Whether the frame of (unwrapped) ``index`` can be predicted from."""
        return index in self._ring

    def decode(self, packet: bytes) -> np.ndarray:
        hdr = parse_header(packet)
        payload = payload_of(packet, hdr)
        if hdr.is_iframe:
            index = self._iframe_index(hdr.frame_index)
            state = self._decode_i(hdr, payload)
            if self._newest is not None and index <= self._newest:
                self._ring.clear()  # not after the newest frame: a new stream (encoder restarted)
        else:
            index = self._pframe_index(hdr)
            ref = index - hdr.reference
            prev = self._ring.get(ref)
            if prev is None:
                why = self._refusal(hdr, index, ref)
                self._newest = index  # its index still counts: the next packets are unwrapped from it
                self.waiting_for_iframe = True
                raise FrameLostError(why)
            state = self._decode_p(hdr, payload, prev)
        self._ring[index] = state
        for k in [k for k in self._ring if k <= index - MAX_REFERENCE]:
            del self._ring[k]
        self._newest = index
        self._state = state
        self.waiting_for_iframe = False
        self.last_header = hdr
        self.last_index = index
        return state.render()

    def _iframe_index(self, index8: int) -> int:
        if self._newest is None:
            return index8
        ahead = (index8 - self._newest) & 0xFF
        return self._newest + ahead if 1 <= ahead <= MAX_LONG_GAP else index8

    def _pframe_index(self, hdr: FrameHeader) -> int:
        if self._newest is None:
            raise FrameLostError(f"P-frame {hdr.frame_index} without a reference: waiting for the next I-frame")
        mod = hdr.index_modulo
        gap = (hdr.frame_index - self._newest - 1) % mod
        if gap > (MAX_SHORT_GAP if mod == 16 else MAX_LONG_GAP):
            raise BitstreamError(
                f"out-of-order packet: P-frame {hdr.frame_index} (mod {mod}) arrived after frame "
                f"{self._newest % mod} (mod {mod})"
            )
        return self._newest + 1 + gap

    def _refusal(self, hdr: FrameHeader, index: int, ref: int) -> str:
        mod = hdr.index_modulo
        lost = index - self._newest - 1
        if hdr.reference == 1:
            return (f"{lost} frame(s) lost before P-frame {hdr.frame_index} (mod {mod}): "
                    f"waiting for the next I-frame")
        return (f"P-frame {hdr.frame_index} (mod {mod}) is predicted from frame {ref % 256} (mod 256), which "
                f"this decoder does not hold: waiting for the next I-frame")

    def _decode_i(self, hdr: FrameHeader, payload: bytes) -> State:
        if not (1 <= hdr.height <= MAX_SIDE and 1 <= hdr.width <= MAX_SIDE) or hdr.q_symbols > MAX_Q:
            raise BitstreamError(f"I-frame header out of range: {hdr}")
        rd = ent.SymbolReader(payload, "I-frame payload")
        canvas, n = intra.read_frame_head(rd)
        return CODERS[hdr.profile].read_iframe(rd, hdr, canvas, n)

    def _decode_p(self, hdr: FrameHeader, payload: bytes, ref: State) -> State:
        coder = CODERS[ref.profile]
        # the reference carried forward to the previous frame's time, then the P-frame on top of it
        st = copy.copy(coder.extrapolate(ref, hdr.reference - 1))  # the profile replaces what the P-frame changes
        return coder.read_pframe(ent.SymbolReader(payload, "P-frame payload"), st)
