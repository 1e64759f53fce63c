"""Own recordings as training data (--data): a camera bag recorded with `semcomm bag record` from the
scene source node over DDS, a folder of image sequences with label PNGs and an MP4 labelled by the
shipped segmenter; clips cut, degraded through the real low-res stream and trained on."""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from rosutil import have_interfaces, processes, ros_env, unique_ns, wait_for
from semcomm_ros.training.config import DataConfig
from semcomm_ros.training.data import codec_degrade, render_clip
from semcomm_ros.training.recorded import build_recorded_clipset

CAM = 64  # camera frames of the recordings here


@pytest.fixture(scope="module")
def camera_bag(tmp_path_factory):
    """10 s of the scene source's camera and ground-truth label topics in a rosbag2."""
    if not have_interfaces():
        pytest.skip("the ROS interfaces are not built (scripts/build_interfaces.sh)")
    tmp = tmp_path_factory.mktemp("bag")
    ns, out = unique_ns(), tmp / "camera_bag"
    with processes(tmp, ros_env()) as P:
        P.node("scene_source", "scene_source", ns, {"width": CAM, "height": CAM, "fps": 10.0, "seed": 3,
                                                  "clip_frames": 1000})
        wait_for(lambda: "publishing" in P.log("scene_source"), 60, "the scene source", P)
        rec = P.start("record", ["-m", "semcomm_ros", "bag", "record", str(out), "--namespace", ns, "--topics",
                                 "camera/image_raw:sensor_msgs/msg/Image", "camera/labels_gt:sensor_msgs/msg/Image",
                                 "--duration", "60", "--max-messages", "40"], stdout=subprocess.PIPE)
        rec.wait(90)
        assert rec.returncode == 0, P.logs()
    return out


def test_bag_clips_pair_frames_with_their_labels_and_the_real_lowres_stream(camera_bag):
    cfg = DataConfig(resolution=32, clips=2, frames_per_clip=4, camera_resolution=CAM, source=str(camera_bag),
                     image_topic="camera/image_raw", label_topic="camera/labels_gt")
    cs = build_recorded_clipset(cfg, degradation="codec", cache=False, progress=False)
    assert cs.frames.shape == (2, 4, 32, 32, 3) and cs.labels.shape == (2, 4, 32, 32)
    assert cs.lowres.shape == (2, 4, 8, 8, 3)
    # every recorded frame is a frame of the scene source's clip, and carries that frame's label map
    from itertools import islice

    from semcomm_ros.scenes import tabletop_clip

    # the node renders one 1000-frame clip (the clip length shapes the motion): its first 60 frames
    rgb, lab = (np.stack(a) for a in zip(*islice(tabletop_clip(3, 1000, width=CAM, height=CAM), 60)))
    small = [cv2.resize(f, (32, 32), interpolation=cv2.INTER_AREA) for f in rgb]
    for frame, labels in zip(cs.frames.reshape(-1, 32, 32, 3), cs.labels.reshape(-1, 32, 32)):
        k = int(np.argmin([np.abs(frame.astype(int) - s).mean() for s in small]))
        assert np.array_equal(frame, small[k])
        assert np.array_equal(labels, cv2.resize(lab[k], (32, 32), interpolation=cv2.INTER_NEAREST))
    # degraded frames: the camera-sized clip through LowResEncoder/LowResDecoder
    k0 = int(np.argmin([np.abs(cs.frames[0, 0].astype(int) - s).mean() for s in small]))
    np.testing.assert_array_equal(cs.lowres[0], codec_degrade(rgb[k0:k0 + 4], cfg))
    with pytest.raises(ValueError, match="no camera topic 'nope'"):
        build_recorded_clipset(DataConfig(source=str(camera_bag), image_topic="nope"), cache=False, progress=False)
    with pytest.raises(ValueError, match="--image-topic"):
        build_recorded_clipset(DataConfig(source=str(camera_bag)), cache=False, progress=False)


def _write_sequences(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """``walk/`` (PNG frames) with ``walk_labels/``, and ``pan.mp4`` without labels."""
    import av

    rgb, lab = render_clip(7, 8, CAM)
    (root / "walk").mkdir(parents=True)
    (root / "walk_labels").mkdir()
    for i, (f, lb) in enumerate(zip(rgb, lab)):
        cv2.imwrite(str(root / "walk" / f"{i:04d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / "walk_labels" / f"{i:04d}.png"), lb)
    with av.open(str(root / "pan.mp4"), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = CAM, CAM, "yuv420p"
        s.options = {"crf": "0"}
        for f in rgb:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return rgb, lab


def test_video_and_image_folders_with_labels_or_the_segmenter(tmp_path):
    rgb, lab = _write_sequences(tmp_path / "rec")
    cfg = DataConfig(resolution=CAM, clips=4, frames_per_clip=4, camera_resolution=CAM, source=str(tmp_path / "rec"))
    cs = build_recorded_clipset(cfg, degradation="realesrgan", cache=False, progress=False)
    assert cs.frames.shape == (4, 4, CAM, CAM, 3)
    # sources in name order: pan.mp4 (labelled by the shipped segmenter), then walk/ (its PNG labels)
    np.testing.assert_array_equal(cs.frames[2:].reshape(-1, CAM, CAM, 3), rgb)
    np.testing.assert_array_equal(cs.labels[2:].reshape(-1, CAM, CAM), lab)
    seg = cs.labels[:2].reshape(-1, CAM, CAM)
    assert (seg > 0).any() and ((seg > 0) == (lab > 0)).mean() > 0.8  # the segmenter finds the objects
    # a label folder that does not match its frames, and a class list the labels exceed
    (tmp_path / "rec" / "walk_labels" / "0000.png").unlink()
    with pytest.raises(ValueError, match="7 label PNGs but .* has 8 frames"):
        build_recorded_clipset(cfg, degradation="realesrgan", cache=False, progress=False)
    classes = tmp_path / "classes.yaml"
    classes.write_text("classes: [floor, thing]\n")
    cfg2 = DataConfig(resolution=CAM, clips=1, frames_per_clip=4, source=str(tmp_path / "rec" / "walk"),
                      classes=str(classes))
    (tmp_path / "rec" / "walk_labels").rename(tmp_path / "rec" / "walk_labels_off")
    with pytest.raises(ValueError, match="labelled by the segmenter"):
        build_recorded_clipset(cfg2, degradation="realesrgan", cache=False, progress=False)


def test_training_stage_on_the_bag(camera_bag, tmp_path):
    """`semcomm train control --data BAG` trains on the recorded clips (paper-tiny, SD folder backbone)."""
    import json

    from semcomm_ros.training import cli
    from test_pretrained import _parser, tiny_paper_preset, write_sd_folder

    sd = write_sd_folder(tmp_path / "w")
    preset = tmp_path / "p.json"
    tiny_paper_preset().save(preset)
    run = tmp_path / "run"
    args = ["control", "--preset", str(preset), "--out", str(run), "--no-progress", "--pretrained", str(sd),
            "--data", str(camera_bag), "--image-topic", "camera/image_raw", "--label-topic", "camera/labels_gt",
            "--degradation", "codec"]
    assert cli.run(_parser().parse_args(args)) == 0
    saved = json.loads((run / "preset.json").read_text())
    assert saved["data"]["source"] == str(camera_bag) and saved["pretrained"]["backbone"] == str(sd)
    # the latent cache is keyed by the recording's files: a re-recorded bag is not read from a stale cache
    import os

    from semcomm_ros.training.adapters import _cache_file
    from semcomm_ros.training.config import Preset

    cached = list((run / "cache").glob("latents_*.pt"))
    p = Preset.load(run / "preset.json")
    assert [_cache_file(run, p, "codec")] == cached
    db = next(camera_bag.glob("*.db3"))
    st = db.stat()
    os.utime(db, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    try:
        assert _cache_file(run, p, "codec") != cached[0]
    finally:
        os.utime(db, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_seg_train_prepares_the_bag_as_a_yolo_data_set(camera_bag, tmp_path):
    """`semcomm seg-train --data BAG`: labelled camera frames -> YOLO polygons, one per class region."""
    import argparse

    import yaml

    from semcomm_ros.scenes import CLASS_NAMES
    from semcomm_ros.segmentation import train

    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    args = parser.parse_args(["--out", str(tmp_path / "ds"), "--data", str(camera_bag), "--image-topic",
                              "camera/image_raw", "--label-topic", "camera/labels_gt", "--train-images", "3",
                              "--val-images", "1", "--imgsz", str(CAM), "--prepare-only"])
    assert train.run(args) == 0
    ds = tmp_path / "ds"
    assert len(list((ds / "images" / "train").glob("*.jpg"))) == 3
    assert len(list((ds / "images" / "val").glob("*.jpg"))) == 1
    assert yaml.safe_load((ds / "data.yaml").read_text())["names"] == dict(enumerate(CLASS_NAMES[1:]))
    lines = [ln.split() for f in (ds / "labels" / "train").glob("*.txt") for ln in f.read_text().splitlines()]
    assert lines and all(0 <= int(ln[0]) < len(CLASS_NAMES) - 1 and len(ln) >= 7 for ln in lines)


def test_one_class_list_for_the_segmenter_and_training(tmp_path):
    """A robot's own classes: the segmentation YAML's `classes:` is what --classes reads, and the
    segmenter it configures pseudo-labels the recordings in those ids."""
    from semcomm_ros.segmentation import load_segmenter
    from semcomm_ros.training.sources import class_names

    rgb, lab = render_clip(7, 4, CAM)
    own = np.minimum(lab, 2)  # floor 0, box 1, cup 2
    (tmp_path / "rec" / "seq").mkdir(parents=True)
    (tmp_path / "gt").mkdir()
    for i, (f, lb) in enumerate(zip(rgb, own)):
        cv2.imwrite(str(tmp_path / "rec" / "seq" / f"{i:03d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(tmp_path / "gt" / f"{i:03d}.png"), lb)
    seg_yaml = tmp_path / "segmentation.yaml"
    seg_yaml.write_text(f"classes: [floor, box, cup]\ndefault_backend: labels\nbackends:\n  labels:\n"
                        f"    source: {tmp_path / 'gt'}\n")
    assert load_segmenter(config=seg_yaml).class_names == ("floor", "box", "cup")
    cfg = DataConfig(resolution=CAM, clips=1, frames_per_clip=4, camera_resolution=CAM,
                     source=str(tmp_path / "rec"), classes=str(seg_yaml), segmenter=str(seg_yaml))
    assert class_names(cfg) == ("floor", "box", "cup")
    cs = build_recorded_clipset(cfg, degradation="realesrgan", cache=False, progress=False)
    np.testing.assert_array_equal(cs.labels[0], own)
