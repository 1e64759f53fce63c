"""semcomm_ros: ultra-low-bitrate generative semantic video communication for ROS 2.

Layers (see docs/ and ../shared/DESIGN.md): ``codec`` (label map and low-res frames to bytes),
``synth`` (causal video diffusion), ``scenes``/``segmentation``/``eval`` and the thin ROS ``nodes``.
"""

__version__ = "0.1.0"
