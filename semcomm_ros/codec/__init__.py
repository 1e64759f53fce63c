"""Bitstreams: the semantic video codec (paper IV-A) and the low-res degraded stream (V-C).

numpy/OpenCV/shapely/constriction/PyAV only: nothing here imports ROS or torch.
"""

from semcomm_ros.codec.errors import BitstreamError
from semcomm_ros.codec.lowres import LowResDecoder, LowResEncoder
from semcomm_ros.codec.semantic import SemanticDecoder, SemanticEncoder

__all__ = ["BitstreamError", "SemanticEncoder", "SemanticDecoder", "LowResEncoder", "LowResDecoder"]
