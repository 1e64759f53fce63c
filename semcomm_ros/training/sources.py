"""Where training clips come from: the procedural tabletop scenes, or the user's own recordings.

``load_clips`` is what every stage calls; it returns a ``ClipSet`` either way, so recorded clips
are cut, cached and sampled exactly like the procedural ones. ``chain_inputs`` and
``decoded_labels`` give the same clips as the robot sees and the operator receives them: what the
stages that must learn the received label maps (the refiner; psi and omega with
``StageConfig.decoded_labels``) train on.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from semcomm_ros.receiver import model_inputs
from semcomm_ros.scenes import tabletop_clip
from semcomm_ros.segmentation import load_segmenter
from semcomm_ros.system import ChainConfig, transmit

from .classes import class_names  # noqa: F401 -- its home before classes.py; callers still import it from here
from .config import DataConfig
from .data import CACHE_DIR, ClipSet, build_clipset
from .recorded import _fingerprint, build_recorded_clipset

#: bump when the chain that makes the decoded label maps changes what it produces
DECODED_VERSION = 1


def load_clips(data: DataConfig, degradation: str = "codec", progress: bool = True) -> ClipSet:
    if not data.source:
        return build_clipset(data, degradation=degradation, progress=progress)
    return build_recorded_clipset(data, degradation=degradation, progress=progress)


def chain_inputs(data: DataConfig, progress: bool = True):
    """Yield (camera frames, robot segmenter) per training clip: the camera's view of each scene,
    clip i of ``load_clips``. Recorded clips keep their label maps (a label topic or the segmenter's
    pseudo-labels) as what the robot's segmenter says."""
    if data.source:
        clips = load_clips(data, degradation="codec", progress=progress)
        for frames, labels in zip(clips.frames, clips.labels):
            truth = {id(f): lab for f, lab in zip(frames, labels)}
            yield list(frames), (lambda f, truth=truth: truth[id(f)])
        return
    seg = load_segmenter()
    for i in range(data.clips):
        clip = tabletop_clip(data.first_seed + i, data.frames_per_clip, width=data.camera_resolution,
                             height=data.camera_resolution)
        yield [np.asarray(c[0], np.uint8) for c in clip], seg


def chain_config(data: DataConfig, clip: int):
    """The whole chain's settings for training clip ``clip``: the eval's (2 kbps, rate-controlled)."""
    return ChainConfig(fps=data.fps, lowres_kbps=data.lowres_kbps, seed=data.first_seed + clip)


def decoded_labels(data: DataConfig, cache: bool = True, progress: bool = True) -> np.ndarray:
    """The label maps the operator receives for each frame of ``load_clips(data)``, (N, F, H, W) uint8 at
    ``data.resolution``: the robot's segmenter, the semantic codec and the 2 kbps link of
    ``semcomm eval`` (``system.transmit``), held over lost frames as the receiver does. Cached."""
    from tqdm.auto import tqdm

    blob = {"data": asdict(data), "v": DECODED_VERSION}
    if data.source:
        blob["files"] = _fingerprint(Path(data.source))
    key = hashlib.sha1(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:12]
    path = CACHE_DIR / f"decoded_{key}.npz"
    if cache and path.is_file():
        with np.load(path) as z:
            return z["labels"]
    out = []
    bar = tqdm(total=data.clips, desc="decoded label maps (robot + link)", disable=not progress)
    size = (data.resolution, data.resolution)
    for i, (frames, segment) in enumerate(chain_inputs(data, progress)):
        rx = transmit(frames, segment, chain_config(data, i))
        out.append(np.stack([model_inputs(lab, None, size, size)[0] for lab in rx.labels]))
        bar.update(1)
    bar.close()
    labels = np.stack(out).astype(np.uint8)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, labels=labels)
        os.replace(tmp, path)
    return labels
