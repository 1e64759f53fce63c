"""The low-resolution degraded stream (paper V-C): appearance cues at ~1 kbps through a real
video codec (VP9 by default) under our own rate control. How it works, the packet format, loss
handling and figures: docs/lowres.md.

- ``packet``: the wire format (version 1), ``parse_header``
- ``rate_control``: the per-frame decisions, plain arithmetic on bit counts (needs no PyAV)
- ``codecs``: the codecs' tuned constants and the PyAV wrappers
- ``encoder`` / ``decoder``: ``LowResEncoder`` / ``LowResDecoder``
"""

from semcomm_ros.codec.lowres.codecs import CODECS
from semcomm_ros.codec.lowres.decoder import LowResDecoder, upsample
from semcomm_ros.codec.lowres.encoder import LowResEncoder, downscale
from semcomm_ros.codec.lowres.packet import DELTA_OVERHEAD, KEY_OVERHEAD, VERSION, crc8, parse_header
from semcomm_ros.codec.lowres.rate_control import RateControl

__all__ = ["LowResEncoder", "LowResDecoder", "RateControl", "CODECS", "VERSION", "KEY_OVERHEAD",
           "DELTA_OVERHEAD", "parse_header", "crc8", "downscale", "upsample"]
