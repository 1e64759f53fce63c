"""Bitstreams: the semantic video codec (paper IV-A) and the low-res degraded stream (V-C).

numpy/OpenCV/shapely/constriction/PyAV only: nothing here imports ROS or torch.
"""

from semcomm_ros.codec.errors import BitstreamError

__all__ = ["BitstreamError"]

try:  # the semantic codec (issue 3)
    from semcomm_ros.codec.semantic import SemanticDecoder, SemanticEncoder  # noqa: F401

    __all__ += ["SemanticEncoder", "SemanticDecoder"]
except ModuleNotFoundError as exc:  # pragma: no cover - only while the module is being written
    if exc.name != "semcomm_ros.codec.semantic":
        raise

try:  # the low-res stream (issue 4)
    from semcomm_ros.codec.lowres import LowResDecoder, LowResEncoder  # noqa: F401

    __all__ += ["LowResEncoder", "LowResDecoder"]
except ModuleNotFoundError as exc:  # pragma: no cover
    if exc.name != "semcomm_ros.codec.lowres":
        raise
