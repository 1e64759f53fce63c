import logging
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from semcomm_ros.bench.seg import heldout_frames
from semcomm_ros.eval.metrics import miou
from semcomm_ros.scenes import CLASS_NAMES, tabletop_clip
from semcomm_ros.segmentation import DEFAULT_WEIGHTS, ClassMap, load_config, load_segmenter, merge_masks, onnx_runtime
from semcomm_ros.segmentation.degrade import down_up

CONFIG = load_config()
MODEL_CLASSES = list(CONFIG["backends"]["ultralytics"]["class_map"])


def refuse_network_and_installs(mp: pytest.MonkeyPatch) -> list:
    """Any connection, name look-up or pip/uv run is refused and recorded in the list returned."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise AssertionError(f"network access attempted: {args[:2]}")

    mp.setattr(socket.socket, "connect", refuse)
    mp.setattr(socket.socket, "connect_ex", refuse)
    mp.setattr(socket, "create_connection", refuse)
    mp.setattr(socket, "getaddrinfo", refuse)
    popen_init = subprocess.Popen.__init__

    def no_install(self, args, *rest, **kwargs):
        argv = [str(a) for a in (args if isinstance(args, (list, tuple)) else str(args).split())]
        if {"pip", "uv", "install"} & {Path(a).name for a in argv}:
            attempts.append(argv)
            raise AssertionError(f"package install attempted: {argv}")
        popen_init(self, args, *rest, **kwargs)

    mp.setattr(subprocess.Popen, "__init__", no_install)
    return attempts


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection, resolve a name or install a package fails the test."""
    attempts = refuse_network_and_installs(monkeypatch)
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
def onnx_export(tmp_path_factory):
    """The module's one export of the shipped weights: from a read-only copy of their folder, into a
    fresh SEMCOMM_CACHE_DIR (kept for the module), with the network and package installs refused."""
    root = tmp_path_factory.mktemp("seg-onnx")
    folder = root / "weights"
    folder.mkdir()
    weights = folder / DEFAULT_WEIGHTS.name
    shutil.copy(DEFAULT_WEIGHTS, weights)
    folder.chmod(0o555)  # (root may still write there: the folder's mtime below catches any file made)
    before = (sorted(folder.iterdir()), folder.stat().st_mtime_ns)
    old = os.environ.get("SEMCOMM_CACHE_DIR")
    os.environ["SEMCOMM_CACHE_DIR"] = str(root / "cache")
    try:
        with pytest.MonkeyPatch.context() as mp:
            attempts = refuse_network_and_installs(mp)
            seg = load_segmenter(weights=weights)
        yield {"seg": seg, "weights": weights, "folder": folder, "before": before, "attempts": attempts,
               "cache": root / "cache"}
    finally:
        folder.chmod(0o755)
        if old is None:
            os.environ.pop("SEMCOMM_CACHE_DIR", None)
        else:
            os.environ["SEMCOMM_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def shipped(onnx_export):
    return load_segmenter()  # the default runtime, onnx: the same weights' bytes, so the export above serves


@pytest.fixture(scope="module")
def shipped_torch():
    return load_segmenter(runtime="torch")


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


# ------------------------------------------------------------------ runtimes: onnx (default) and torch
def test_onnx_export_from_a_read_only_folder_into_the_cache_offline(onnx_export, monkeypatch):
    seg, weights, cache = onnx_export["seg"], onnx_export["weights"], onnx_export["cache"]
    assert not onnx_export["attempts"]
    assert seg.runtime == "onnx" and seg.model is None
    key = onnx_runtime.export_key(weights)
    assert seg.graph.path == cache / "yolo" / f"{weights.stem}-{key}.onnx" == onnx_runtime.cached_path(weights)
    assert seg.graph.key == key and seg.graph.provider == "CPUExecutionProvider"
    assert sorted(p.name for p in (cache / "yolo").iterdir()) == [seg.graph.path.name]  # no temporary left
    folder = onnx_export["folder"]
    assert (sorted(folder.iterdir()), folder.stat().st_mtime_ns) == onnx_export["before"]  # nothing written there

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx_runtime, "export_onnx", no_export)
    assert load_segmenter(weights=weights).runtime == "onnx"  # once per weights file


def test_onnx_and_torch_label_maps_agree(shipped, shipped_torch):
    assert shipped.runtime == "onnx" and shipped_torch.runtime == "torch"
    frames = heldout_frames(4)
    frames.append((down_up(frames[0][0], 128), frames[0][1]))  # degraded like a decoded frame
    diffs = []
    for rgb, lab in frames:
        a, b = shipped(rgb), shipped_torch(rgb)
        assert np.mean(a == b) >= 0.99
        diffs.append(miou(a, lab) - miou(b, lab))
    assert abs(np.mean(diffs)) <= 0.005, diffs
    rgb, _ = next(tabletop_clip(123, 1, 384, 256))  # not square: the same letterbox in both runtimes
    assert np.mean(shipped(rgb) == shipped_torch(rgb)) >= 0.99


def test_onnx_falls_back_to_torch_without_onnxruntime(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    with caplog.at_level(logging.INFO):
        seg = load_segmenter(runtime="onnx")
    assert seg.runtime == "torch" and seg.graph is None and seg.model is not None
    lines = [r for r in caplog.records if r.name.startswith("semcomm_ros")]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING, [r.getMessage() for r in lines]
    message = lines[0].getMessage()
    assert "torch instead of onnx" in message and "onnxruntime is not importable" in message


def test_onnx_on_cuda_needs_the_cuda_provider(onnx_export, caplog):
    if onnx_runtime.unavailable_reason("cuda") is None:
        pytest.skip("onnxruntime has a CUDA provider here")
    with caplog.at_level(logging.INFO):
        seg = load_segmenter(weights=onnx_export["weights"], runtime="onnx", device="cuda")
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("semcomm_ros")]
    assert seg.runtime == "torch" and len(lines) == 1 and "CUDAExecutionProvider" in lines[0], lines


def test_runtime_must_be_known():
    with pytest.raises(ValueError, match=r"runtime must be one of \['onnx', 'torch'\]"):
        load_segmenter(runtime="tensorrt")


def test_tiny_training_run_stays_offline(tmp_path, no_network, monkeypatch):
    """Data preparation + ultralytics training from the model YAML, then the ONNX export beside the
    installed weights, with all sockets and package installs refused."""
    from semcomm_ros import cli

    monkeypatch.setenv("SEMCOMM_CACHE_DIR", str(tmp_path / "cache"))
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
    # seg-train exported what it installed: the segmenter runs that graph, nothing exported at load
    assert seg.runtime == "onnx" and seg.graph.path == out / "tiny.onnx" and not (tmp_path / "cache").exists()
    assert os.environ.get("YOLO_OFFLINE") == "1"
