"""``SemanticDecoder``: packets back to label maps; loss and order checks, then the profile's
reader."""

from __future__ import annotations

import copy

import numpy as np

from semcomm_ros.codec import entropy as ent
from semcomm_ros.codec.errors import BitstreamError
from semcomm_ros.codec.packet import MAX_Q, MAX_SIDE, FrameHeader, FrameLostError, parse_header, payload_of
from semcomm_ros.codec.semantic import intra
from semcomm_ros.codec.semantic.profiles import CODERS
from semcomm_ros.codec.semantic.state import State


class SemanticDecoder:
    """``decode(packet) -> labels``. Loss behaviour: raises ``FrameLostError`` (a BitstreamError).

    After a gap in the frame index (or before the first I-frame) every P-frame raises
    FrameLostError("... waiting for the next I-frame"); the next I-frame decodes normally and the
    stream resumes exactly there. A packet older than the expected one raises BitstreamError
    ("out of order") and leaves the state untouched.
    """

    def __init__(self) -> None:
        self._state: State | None = None
        self.last_header: FrameHeader | None = None
        self.waiting_for_iframe = True

    def reset(self) -> None:
        self._state = None
        self.waiting_for_iframe = True

    def decode(self, packet: bytes) -> np.ndarray:
        hdr = parse_header(packet)
        payload = payload_of(packet, hdr)
        if hdr.is_iframe:
            state = self._decode_i(hdr, payload)
        else:
            if self._state is None:
                raise FrameLostError(
                    f"P-frame {hdr.frame_index} without a reference: waiting for the next I-frame"
                )
            gap = (hdr.frame_index - self._state.next_index) & 0xF
            if gap > 8:
                raise BitstreamError(
                    f"out-of-order packet: P-frame {hdr.frame_index} (mod 16) arrived after frame "
                    f"{(self._state.next_index - 1) & 0xF} (mod 16)"
                )
            if gap:
                self.reset()
                raise FrameLostError(
                    f"{gap} frame(s) lost before P-frame {hdr.frame_index} (mod 16): waiting for the next I-frame"
                )
            state = self._decode_p(hdr, payload, self._state)
        self._state = state
        self.waiting_for_iframe = False
        self.last_header = hdr
        return state.render()

    def _decode_i(self, hdr: FrameHeader, payload: bytes) -> State:
        if not (1 <= hdr.height <= MAX_SIDE and 1 <= hdr.width <= MAX_SIDE) or hdr.q_symbols > MAX_Q:
            raise BitstreamError(f"I-frame header out of range: {hdr}")
        rd = ent.SymbolReader(payload, "I-frame payload")
        canvas, n = intra.read_frame_head(rd)
        return CODERS[hdr.profile].read_iframe(rd, hdr, canvas, n)

    def _decode_p(self, hdr: FrameHeader, payload: bytes, prev: State) -> State:
        st = copy.copy(prev)  # the profile replaces what the P-frame changes
        st.next_index = (hdr.frame_index + 1) & 0xFF
        return CODERS[prev.profile].read_pframe(ent.SymbolReader(payload, "P-frame payload"), st)
