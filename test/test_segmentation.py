import os
import socket

import cv2
import numpy as np
import pytest

from semcomm_ros.bench.seg import heldout_frames
from semcomm_ros.eval.metrics import miou
from semcomm_ros.scenes import CLASS_NAMES, tabletop_clip
from semcomm_ros.segmentation import DEFAULT_WEIGHTS, ClassMap, load_config, load_segmenter, merge_masks

CONFIG = load_config()
MODEL_CLASSES = list(CONFIG["backends"]["ultralytics"]["class_map"])


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection or resolve a name fails the test."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise AssertionError(f"network access attempted: {args[:2]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield attempts
    assert not attempts, f"network access attempted: {attempts}"


# ------------------------------------------------------------------ class map and merging
def test_class_map_maps_model_classes_to_codec_ids():
    cm = ClassMap({"mug": "mug", "cup": "mug", "plate": "bowl"}, ignore=["person"])
    lut = cm.lut({0: "cup", 1: "person", 2: "plate"})
    assert lut.tolist() == [CLASS_NAMES.index("mug"), -1, CLASS_NAMES.index("bowl")]


def test_class_map_rejects_unknown_classes_clearly():
    with pytest.raises(ValueError, match=r"unknown codec class 'spaceship'"):
        ClassMap({"thing": "spaceship"})
    with pytest.raises(ValueError, match=r"\['giraffe'\] are not in the class_map"):
        ClassMap({"mug": "mug"}).lut({0: "mug", 1: "giraffe"})
    with pytest.raises(ValueError, match="not a codec class name or an id"):
        ClassMap({"mug": 99})


def test_shipped_config_maps_every_object_class():
    cm = ClassMap(CONFIG["backends"]["ultralytics"]["class_map"])
    lut = cm.lut(MODEL_CLASSES)
    assert sorted(lut.tolist()) == list(range(1, len(CLASS_NAMES)))


def test_merge_order_is_defined():
    masks = np.zeros((2, 8, 8), bool)
    masks[0, :, :6] = True  # big
    masks[1, :, 4:] = True  # small, overlaps columns 4-5
    lut = np.array([1, 2], np.int16)
    by_conf = merge_masks(masks, np.array([0, 1]), np.array([0.9, 0.5]), lut, "confidence")
    assert (by_conf[:, 4:6] == 1).all() and (by_conf[:, 6:] == 2).all()
    by_area = merge_masks(masks, np.array([0, 1]), np.array([0.9, 0.5]), lut, "area")
    assert (by_area[:, 4:6] == 2).all()  # (column 4-7 mask is smaller: painted last)
    with pytest.raises(ValueError, match="merge order"):
        merge_masks(masks, np.array([0, 1]), np.array([0.9, 0.5]), lut, "random")


# ------------------------------------------------------------------ labels backend
def test_labels_backend_from_files_and_feed(tmp_path):
    frames = list(tabletop_clip(4, 3, 96, 64))
    for i, (_, lab) in enumerate(frames):
        cv2.imwrite(str(tmp_path / f"{i:04d}.png"), lab)
    seg = load_segmenter("labels", source=tmp_path)
    assert seg.class_names == CLASS_NAMES
    for rgb, lab in frames:
        out = seg(rgb)
        assert out.shape == (64, 96) and out.dtype == np.uint8
        assert np.array_equal(out, lab)
    with pytest.raises(ValueError, match="exhausted"):
        seg(frames[0][0])
    fed = load_segmenter("labels")
    with pytest.raises(ValueError, match="no ground-truth labels yet"):
        fed(frames[0][0])
    fed.feed(frames[1][1])
    assert np.array_equal(fed(frames[1][0]), frames[1][1])
    with pytest.raises(ValueError, match="not codec classes"):
        fed.feed(np.full((64, 96), 200, np.uint8))
    with pytest.raises(ValueError, match="image is 32x32"):
        fed(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="HxWx3"):
        fed(np.zeros((64, 96), np.uint8))


def test_labels_backend_id_map():
    seg = load_segmenter("labels", id_map={0: "table", 7: "mug", 9: "bowl"})
    seg.feed(np.array([[0, 7], [9, 9]], np.uint8).repeat(8, 0).repeat(8, 1))
    out = seg(np.zeros((16, 16, 3), np.uint8))
    assert set(np.unique(out)) == {0, CLASS_NAMES.index("mug"), CLASS_NAMES.index("bowl")}
    with pytest.raises(ValueError, match=r"simulator ids \[3\] are not in id_map"):
        seg.feed(np.full((16, 16), 3, np.uint8))


def test_unknown_backend_and_missing_weights(tmp_path):
    with pytest.raises(ValueError, match="unknown segmentation backend"):
        load_segmenter("sam")
    with pytest.raises(ValueError, match="weights not found"):
        load_segmenter("ultralytics", weights=tmp_path / "yolo11n-seg.pt")


# ------------------------------------------------------------------ shipped model, offline
@pytest.fixture(scope="module")
def shipped():
    return load_segmenter()


def test_shipped_model_is_small_and_maps_all_classes(shipped):
    assert DEFAULT_WEIGHTS.is_file() and DEFAULT_WEIGHTS.stat().st_size < 12e6
    assert shipped.backend == "ultralytics"
    assert sorted(shipped.model_names.values()) == sorted(MODEL_CLASSES)


def test_shipped_model_segments_held_out_frames_offline(shipped, no_network):
    scores = []
    for rgb, lab in heldout_frames(6):
        pred = shipped(rgb)
        assert pred.shape == lab.shape and pred.dtype == np.uint8
        assert pred.max() < len(CLASS_NAMES)
        scores.append(miou(pred, lab))
    assert np.mean(scores) > 0.7, scores
    # any size works: masks come back at the input size
    rgb, lab = next(tabletop_clip(123, 1, 384, 256))
    assert shipped(rgb).shape == (256, 384)


def test_shipped_model_rejects_bad_images(shipped):
    with pytest.raises(ValueError, match="uint8"):
        shipped(np.zeros((64, 64, 3), np.float32))


def test_tiny_training_run_stays_offline(tmp_path, no_network):
    """Data preparation + ultralytics training from the model YAML, with all sockets refused."""
    from semcomm_ros import cli

    out = tmp_path / "seg"
    rc = cli.main(["seg-train", "--out", str(out), "--train-images", "4", "--val-images", "2", "--epochs", "1",
                   "--imgsz", "64", "--batch", "2", "--workers", "0", "--install", str(out / "tiny.pt")])
    assert rc == 0
    assert (out / "tiny.pt").is_file()
    labels = sorted((out / "labels" / "train").glob("*.txt"))
    assert len(labels) == 4
    first = labels[0].read_text().split("\n")[0].split()
    assert 0 <= int(first[0]) < len(CLASS_NAMES) - 1 and len(first) >= 7
    seg = load_segmenter("ultralytics", weights=out / "tiny.pt", imgsz=64)
    assert seg(next(tabletop_clip(1, 1, 64, 64))[0]).shape == (64, 64)
    assert os.environ.get("YOLO_OFFLINE") == "1"
