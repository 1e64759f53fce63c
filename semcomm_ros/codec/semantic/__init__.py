"""The contour-based I/P-frame semantic video codec of paper Sec. IV-A, in two profiles that share
the packet format (``codec/packet.py``) and the contour machinery (``codec/contours.py``):
``paper`` (the paper's scheme exactly) and ``tracked`` (ours: every region tracked with a rigid
pose). How each codes its frames, the bitstream and the figures: docs/semantic_codec.md.

- ``state``: what a decoder knows after a frame (the encoder keeps an identical copy)
- ``intra``: contour quantization and the parts of intra coding both profiles share
- ``paper`` / ``tracked``: one module a profile, its encoder and decoder side by side
  (``pose_search``: the tracked encoder's matching and pose search); ``profiles``: them by name
- ``encoder`` / ``decoder``: ``SemanticEncoder`` / ``SemanticDecoder``
"""

from semcomm_ros.codec.packet import PROFILES, FrameHeader, FrameLostError, frame_bits, parse_header
from semcomm_ros.codec.semantic.decoder import SemanticDecoder
from semcomm_ros.codec.semantic.encoder import SemanticEncoder
from semcomm_ros.codec.semantic.profiles import PROFILE_DEFAULTS

__all__ = [
    "SemanticEncoder",
    "SemanticDecoder",
    "FrameHeader",
    "FrameLostError",
    "parse_header",
    "frame_bits",
    "PROFILES",
    "PROFILE_DEFAULTS",
]
