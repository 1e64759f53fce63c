"""Training clips from the user's own recordings (``--data PATH``), as a ``ClipSet``.

Sources:
- a rosbag2 folder (``metadata.yaml``; e.g. from ``semcomm bag record``): the camera topic
  ``--image-topic`` (sensor_msgs/Image rgb8/bgr8/rgba8/bgra8/mono8, or CompressedImage), and
  optionally a mono8 label topic ``--label-topic`` paired by header stamp;
- a folder of MP4 files and/or image-sequence folders (PNG/JPEG frames in name order, taken to be
  at ``DataConfig.fps``); labels for ``NAME.mp4`` or ``NAME/`` are PNG class-id maps in
  ``NAME_labels/``, one per frame in name order.

Frames without labels are labelled by the segmenter (``--segmenter``, default the shipped config),
as the robot would label them. Frames are resampled to ``fps`` by their time stamps, centre-cropped
to a square, resized to the training resolution, cut into clips of ``frames_per_clip``
consecutive frames (a gap in time starts a new clip), and degraded exactly as the procedural
clips are (the real low-res stream from camera-sized frames, or the Real-ESRGAN pipeline). The
result is cached under ``.cache/training/`` keyed by the config and the recordings' files.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from semcomm_ros.segmentation import load_segmenter

from .classes import class_names
from .config import DataConfig
from .data import CACHE_DIR, DEGRADATIONS, ClipSet, _key, codec_degrade, realesrgan_degrade

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
LABELS_SUFFIX = "_labels"


@dataclass
class Frame:
    t: float  # seconds
    rgb: np.ndarray  # HxWx3 uint8
    labels: np.ndarray | None  # HxW uint8 class ids, or None (to be labelled)


# -- sources ------------------------------------------------------------------------------------
def is_bag(path: Path) -> bool:
    return (path / "metadata.yaml").is_file()


def _sequences(root: Path, fps: float) -> list[tuple[str, Iterator[Frame]]]:
    """(name, frames) of every MP4 file and image-sequence folder under ``root`` (sorted by name)."""
    found = []
    if any(p.suffix.lower() in IMAGE_SUFFIXES for p in root.iterdir() if p.is_file()):
        found.append((root.name, _image_sequence(root, root.parent / f"{root.name}{LABELS_SUFFIX}", fps)))
    for p in sorted(root.iterdir()):
        if p.name.endswith(LABELS_SUFFIX):
            continue
        lab = root / f"{p.stem if p.is_file() else p.name}{LABELS_SUFFIX}"
        if p.is_file() and p.suffix.lower() == ".mp4":
            found.append((p.name, _video(p, lab)))
        elif p.is_dir() and any(q.suffix.lower() in IMAGE_SUFFIXES for q in p.iterdir()):
            found.append((p.name, _image_sequence(p, lab, fps)))
    if not found:
        raise FileNotFoundError(f"--data {root}: no rosbag2 (metadata.yaml), MP4 file or image-sequence folder "
                                f"({', '.join(IMAGE_SUFFIXES)}) found")
    return found


def _label_files(label_dir: Path, n: int, what: Path) -> list[Path] | None:
    if not label_dir.is_dir():
        return None
    files = sorted(p for p in label_dir.iterdir() if p.suffix.lower() == ".png")
    if len(files) != n:
        raise ValueError(f"{label_dir} holds {len(files)} label PNGs but {what} has {n} frames (one per frame)")
    return files


def _read_labels(path: Path) -> np.ndarray:
    lab = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if lab is None or lab.ndim != 2 or lab.dtype != np.uint8:
        raise ValueError(f"{path} must be a single-channel 8-bit PNG of class ids")
    return lab


def _image_sequence(folder: Path, label_dir: Path, fps: float) -> Iterator[Frame]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    labels = _label_files(label_dir, len(files), folder)
    for i, f in enumerate(files):
        bgr = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"cannot read image {f}")
        yield Frame(i / fps, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), _read_labels(labels[i]) if labels else None)


def _video(path: Path, label_dir: Path) -> Iterator[Frame]:
    import av

    with av.open(str(path)) as c:
        frames = [(float(f.time if f.time is not None else i), f.to_ndarray(format="rgb24"))
                  for i, f in enumerate(c.decode(video=0))]
    labels = _label_files(label_dir, len(frames), path)
    for i, (t, rgb) in enumerate(frames):
        yield Frame(t, rgb, _read_labels(labels[i]) if labels else None)


def _image_from_ros(msg, msgtype: str, mono: bool) -> np.ndarray:
    if msgtype.endswith("CompressedImage"):
        arr = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8),
                           cv2.IMREAD_UNCHANGED if mono else cv2.IMREAD_COLOR)
        if arr is None:
            raise ValueError(f"cannot decode a CompressedImage of format {msg.format!r}")
        return arr if mono else cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    chans = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "8UC1": 1}.get(msg.encoding)
    if chans is None or (mono and chans != 1):
        raise ValueError(f"unsupported image encoding {msg.encoding!r}" + (" for labels (mono8 expected)" if mono else
                         " (rgb8, bgr8, rgba8, bgra8, mono8 or a CompressedImage)"))
    data = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)
    arr = data[:, :msg.width * chans].reshape(msg.height, msg.width, chans)
    if mono:
        return arr[..., 0].copy()
    if chans == 1:
        return np.repeat(arr, 3, axis=2)
    if msg.encoding.startswith("bgr"):
        arr = arr[..., 2::-1]
    return np.ascontiguousarray(arr[..., :3])


def _bag(path: Path, image_topic: str, label_topic: str, backlog: int = 64) -> Iterator[Frame]:
    """Camera frames in recorded order, each with its label map (same header stamp) when a label topic is given."""
    # deferred: only a rosbag2 --data reads through the ROS layer; training imports without it
    from semcomm_ros.ros import bag

    meta = bag.info(path)["topics"]

    def find(topic, what):
        hits = [t for t in meta if t == topic or (not topic.startswith("/") and t.endswith("/" + topic))]
        if not hits:
            raise ValueError(f"{path} has no {what} topic {topic!r}; its topics: {', '.join(sorted(meta))}")
        return hits[0]

    if not image_topic:
        raise ValueError(f"{path} is a rosbag2: name its camera topic with --image-topic (topics: "
                         f"{', '.join(sorted(meta))})")
    img_t = find(image_topic, "camera")
    lab_t = find(label_topic, "label") if label_topic else None
    store = bag.typestore()
    waiting: dict[int, np.ndarray] = {}  # images waiting for their label map, and label maps for their image
    early: dict[int, np.ndarray] = {}
    for topic, typ, t_ns, data in bag.read(path, [img_t] + ([lab_t] if lab_t else [])):
        msg = store.deserialize_cdr(data, typ)
        stamp = msg.header.stamp.sec * 10 ** 9 + msg.header.stamp.nanosec or t_ns
        img = _image_from_ros(msg, typ, mono=topic == lab_t)
        if lab_t is None:
            yield Frame(stamp / 1e9, img, None)
            continue
        mine, other = (early, waiting) if topic == lab_t else (waiting, early)
        if stamp in other:
            pair = (other.pop(stamp), img) if topic == lab_t else (img, other.pop(stamp))
            yield Frame(stamp / 1e9, *pair)
        else:
            mine[stamp] = img
            while len(mine) > backlog:  # a frame whose partner the recorder missed
                mine.pop(next(iter(mine)))


# -- clips --------------------------------------------------------------------------------------
def _square(img: np.ndarray, size: int, nearest: bool) -> np.ndarray:
    h, w = img.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    crop = img[y:y + s, x:x + s]
    if s == size:
        return np.ascontiguousarray(crop)
    interp = cv2.INTER_NEAREST if nearest else (cv2.INTER_AREA if s > size else cv2.INTER_LINEAR)
    return cv2.resize(crop, (size, size), interpolation=interp)


def resample(frames: Iterator[Frame], fps: float) -> Iterator[list[Frame]]:
    """Runs of frames on the 1/fps grid: at most one frame per slot; a skipped slot ends a run."""
    run, last = [], None
    t0 = None
    for f in frames:
        t0 = f.t if t0 is None else t0
        slot = int(round((f.t - t0) * fps))
        if last is not None and slot <= last:
            continue
        if last is not None and slot > last + 1 and run:
            yield run
            run = []
        run.append(f)
        last = slot
    if run:
        yield run


def _fingerprint(path: Path) -> str:
    """Names, sizes and modification times of a recording's files: a changed recording is a new cache."""
    h = hashlib.sha1()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for p in files:
        st = p.stat()
        h.update(f"{p.relative_to(path.parent)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]


def build_recorded_clipset(cfg: DataConfig, degradation: str = "codec", cache: bool = True,
                           progress: bool = True, pseudo_labels: bool = True) -> ClipSet:
    """Up to ``cfg.clips`` clips of ``cfg.frames_per_clip`` frames from ``cfg.source``, cached.
    ``pseudo_labels=False``: frames without a label map are an error instead of segmented."""
    from tqdm.auto import tqdm

    if degradation not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {degradation!r}; expected one of {', '.join(DEGRADATIONS)}")
    src = Path(cfg.source)
    if not src.exists():
        raise FileNotFoundError(f"--data {src} does not exist")
    names = class_names(cfg)
    key = hashlib.sha1(
        json.dumps([_key(cfg, degradation), _fingerprint(src), pseudo_labels]).encode()).hexdigest()[:12]
    path = CACHE_DIR / f"recorded_{key}.npz"
    if cache and path.is_file():
        with np.load(path) as z:
            return ClipSet(z["frames"], z["labels"], z["lowres"], degradation)
    if is_bag(src):
        sources = [(src.name, _bag(src, cfg.image_topic, cfg.label_topic))]
    else:
        sources = _sequences(src, cfg.fps)
    n, k = cfg.clips, cfg.frames_per_clip
    frames, labels, lowres = [], [], []
    bar = tqdm(total=n * k, desc=f"cache clips from {src.name}", unit="frame", disable=not progress)
    labeller = _Labeller(cfg, names, pseudo_labels)
    for name, clip in _clips(sources, cfg.fps, k, n):
        cam = np.stack([_square(f.rgb, cfg.camera_resolution, False) for f in clip])
        rgb = np.stack([_square(f.rgb, cfg.resolution, False) for f in clip])
        lab = np.stack([_square(f.labels if f.labels is not None else labeller(c), cfg.resolution, True)
                        for f, c in zip(clip, cam)])
        if lab.max() >= len(names):
            raise ValueError(f"{name}: label id {int(lab.max())} but the class list has {len(names)} classes "
                             f"(ids 0..{len(names) - 1}; --classes)")
        deg = degradation if degradation != "mixed" else ("codec" if len(frames) % 2 == 0 else "realesrgan")
        if deg == "codec":
            low = codec_degrade(cam, cfg)
        else:
            rng = np.random.default_rng(len(frames))
            low = np.stack([realesrgan_degrade(f, cfg.lowres_factor, rng) for f in rgb])
        frames.append(rgb)
        labels.append(lab)
        lowres.append(low)
        bar.update(k)
    bar.close()
    if not frames:
        raise ValueError(f"--data {src}: no run of {k} consecutive frames at {cfg.fps:g} fps "
                         "(frames_per_clip; a gap in time starts a new clip)")
    cs = ClipSet(np.stack(frames), np.stack(labels), np.stack(lowres), degradation)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, frames=cs.frames, labels=cs.labels, lowres=cs.lowres)
        os.replace(tmp, path)
    return cs


def _clips(sources, fps: float, k: int, n: int):
    """(source name, k consecutive frames) until n clips are cut."""
    made = 0
    for name, stream in sources:
        for run in resample(stream, fps):
            for i in range(0, len(run) - k + 1, k):
                yield name, run[i:i + k]
                made += 1
                if made >= n:
                    return


class _Labeller:
    """The robot's segmenter (``--segmenter``, default the shipped config), loaded on first use."""

    def __init__(self, cfg: DataConfig, names: tuple[str, ...], allowed: bool = True):
        self.cfg, self.names, self.seg, self.allowed = cfg, names, None, allowed

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        if not self.allowed:
            raise ValueError(
                f"{self.cfg.source}: frames without label maps; give a --label-topic or NAME_labels/ PNGs")
        if self.seg is None:
            self.seg = load_segmenter(config=self.cfg.segmenter or None)
            if tuple(self.seg.class_names) != tuple(self.names):
                raise ValueError(f"frames without labels are labelled by the segmenter, whose classes "
                                 f"{list(self.seg.class_names)} are not the training classes {list(self.names)}: give "
                                 "the same class list to both (the segmentation YAML's `classes:` and --classes), "
                                 "or label maps (--label-topic or NAME_labels/ PNGs)")
        return np.asarray(self.seg(rgb), np.uint8)
