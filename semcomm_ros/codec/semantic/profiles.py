"""The profiles by name (the packet header's ``profile`` field). Each is a module with the same
functions: ``write_iframe`` / ``read_iframe`` (contours), ``iframe_reference`` (what the encoder
keeps from an I-frame for its P-frames), ``extrapolate`` (a decoded state carried some frames forward:
where a P-frame predicted from an older frame starts), ``write_pframe`` (the encoder's parameters in,
the payload and what it counted out) / ``read_pframe`` and ``DEFAULTS``."""

from semcomm_ros.codec.packet import PROFILES
from semcomm_ros.codec.semantic import paper, tracked

CODERS = {"paper": paper, "tracked": tracked}
assert tuple(CODERS) == PROFILES, "every profile the packet format names needs its module here"

# Parameters used when the encoder is given None: the paper's operating point, and the point of
# the tracked profile's rate-distortion curve that beats the paper point's mIoU with margin
# below 0.5 kbps (docs/semantic_codec.md). The slacks only act in the tracked profile.
PROFILE_DEFAULTS = {name: coder.DEFAULTS for name, coder in CODERS.items()}
