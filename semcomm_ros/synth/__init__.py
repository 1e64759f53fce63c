"""Causal few-step video diffusion synthesizer (paper IV-B, V-D): frozen latent-diffusion backbone
+ Semantic Control (psi), Restoration Adapter (omega), causal Temporal Adapter (phi) with KV cache.

Torch and diffusers load when one of these names is first used, so importing the package is cheap.
"""

from __future__ import annotations

__all__ = ["CausalSynthesizer", "SynthModel", "SynthConfig", "DEFAULT_MODEL_DIR"]


def __getattr__(name):
    if name == "CausalSynthesizer":
        from .synthesizer import CausalSynthesizer  # deferred: torch and diffusers on first use
        return CausalSynthesizer
    if name in ("SynthModel", "DEFAULT_MODEL_DIR"):
        from . import model  # deferred: torch on first use
        return getattr(model, name)
    if name == "SynthConfig":
        from .config import SynthConfig  # deferred: `import semcomm_ros.synth` loads nothing
        return SynthConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
