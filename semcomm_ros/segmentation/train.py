"""``semcomm seg-train``: data preparation and training of the tabletop segmentation model.

Data: frames of generated tabletop clips (``semcomm_ros.scenes``), each degraded at random the way
synthesized and decoded frames are (``degrade.random_degrade``), resized to the training size and
written in the YOLO segmentation format (one polygon per instance region, normalised; the bowl's
hole is joined to its outline by a zero-width cut so that the polygon keeps the hole).
Training: ultralytics from its model YAML (``yolo11n-seg.yaml``, random init, no download), on the
CPU, offline (``YOLO_OFFLINE=1``, ``amp=False``, ``plots=False``). ``last.pt`` is written every
epoch, so ``--resume`` continues an interrupted run. The final weights (``--install``, else ``last.pt``)
are also exported to ONNX beside them (``onnx_runtime.py``), the graph the segmenter's onnx runtime runs.

    semcomm seg-train --out .cache/seg-train --train-images 1000 --epochs 12 --imgsz 320 \
        --install semcomm_ros/segmentation/weights/tabletop-yolo11n-seg.pt
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from ..scenes import CLASS_NAMES, TabletopScene
from ..scenes.splits import SEG_TRAIN_SEED0, SEG_VAL_SEED0
from ..training.classes import class_names
from ..training.config import DataConfig
from ..training.recorded import build_recorded_clipset
from .degrade import random_degrade
from .offline import import_ultralytics
from .onnx_runtime import export_onnx

MODEL_CLASSES: tuple[str, ...] = CLASS_NAMES[1:]  # YOLO class k = codec class k + 1; the table is background


def _keyhole(outer: np.ndarray, holes: list[np.ndarray]) -> np.ndarray:
    """One polygon for a region with holes: each hole is spliced in at its nearest outline point."""
    poly = outer
    for hole in holes:
        d = ((poly[:, None, :] - hole[None, :, :]) ** 2).sum(-1)
        i, j = np.unravel_index(int(d.argmin()), d.shape)
        ring = np.concatenate([hole[j:], hole[: j + 1]], 0)
        poly = np.concatenate([poly[: i + 1], ring, poly[i:]], 0)
    return poly


def instance_polygons(labels: np.ndarray, inst: np.ndarray, min_area: float = 6.0) -> list[tuple[int, np.ndarray]]:
    """``(model_class, polygon in pixels)`` for every visible region of every instance."""
    out = []
    for k in np.unique(inst):
        if k == 0:
            continue
        mask = (inst == k).astype(np.uint8)
        cls = int(labels[mask.astype(bool)][0])
        contours, hier = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
        if hier is None:
            continue
        hier = hier[0]
        for ci, c in enumerate(contours):
            if hier[ci][3] != -1 or cv2.contourArea(c) < min_area:
                continue
            holes = []
            child = hier[ci][2]
            while child != -1:
                if cv2.contourArea(contours[child]) >= min_area:
                    holes.append(cv2.approxPolyDP(contours[child], 0.7, True)[:, 0, :].astype(np.float64))
                child = hier[child][0]
            outer = cv2.approxPolyDP(c, 0.7, True)[:, 0, :].astype(np.float64)
            if len(outer) < 3:
                continue
            out.append((cls - 1, _keyhole(outer, holes)))
    return out


def generated_frames(seed0: int, n_images: int, size: int = 512, per_clip: int = 5, clip_frames: int = 30):
    """``(seed, frame, rgb, labels, instances)`` sampled from consecutive generated clips."""
    made = 0
    clip = 0
    while made < n_images:
        seed = seed0 + clip
        rng = np.random.default_rng(seed + 7)
        scene = TabletopScene(seed, clip_frames, size, size)
        picks = set(rng.choice(clip_frames, size=min(per_clip, clip_frames), replace=False).tolist())
        for t in range(clip_frames):
            if t:
                scene.step()
            if t in picks:
                rgb, lab, inst = scene.render(instances=True)
                yield seed, t, rgb, lab, inst
                made += 1
                if made >= n_images:
                    return
        clip += 1


def prepare(out: Path, n_train: int, n_val: int, imgsz: int, log=print) -> Path:
    """Write images/{train,val}, labels/{train,val} and data.yaml under ``out``."""
    import yaml

    out.mkdir(parents=True, exist_ok=True)
    for split, seed0, n in (("train", SEG_TRAIN_SEED0, n_train), ("val", SEG_VAL_SEED0, n_val)):
        idir, ldir = out / "images" / split, out / "labels" / split
        if idir.exists() and len(list(idir.glob("*.jpg"))) == n and len(list(ldir.glob("*.txt"))) == n:
            log(f"{split}: {n} images already prepared")
            continue
        shutil.rmtree(idir, ignore_errors=True)
        shutil.rmtree(ldir, ignore_errors=True)
        idir.mkdir(parents=True)
        ldir.mkdir(parents=True)
        t0 = time.perf_counter()
        aug = np.random.default_rng(seed0 + 123)
        for i, (seed, t, rgb, lab, inst) in enumerate(generated_frames(seed0, n)):
            img = random_degrade(rgb, aug) if split == "train" else rgb
            img = cv2.resize(img, (imgsz, imgsz), interpolation=cv2.INTER_AREA)
            name = f"{seed}_{t:03d}"
            cv2.imwrite(str(idir / f"{name}.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            h, w = lab.shape
            lines = []
            for cls, poly in instance_polygons(lab, inst):
                xy = (poly / np.array([w, h])).clip(0, 1).reshape(-1)
                lines.append(f"{cls} " + " ".join(f"{v:.5f}" for v in xy))
            (ldir / f"{name}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
            if (i + 1) % 200 == 0:
                log(f"{split}: {i + 1}/{n} images ({time.perf_counter() - t0:.0f} s)")
    data = {
        "path": str(out.resolve()),
        "train": "images/train",
        "val": "images/val",
        "names": {i: n for i, n in enumerate(MODEL_CLASSES)},
    }
    (out / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return out / "data.yaml"


def prepare_recorded(out: Path, source: Path, n_train: int, n_val: int, imgsz: int, image_topic: str = "",
                     label_topic: str = "", classes: str = "", fps: float = 2.0) -> Path:
    """The YOLO data set from labelled recordings (training.recorded): every ``val_every``-th frame to val;
    instances are the connected regions of each class."""
    import yaml

    cfg = DataConfig(resolution=imgsz, camera_resolution=imgsz, clips=n_train + n_val, frames_per_clip=1, fps=fps,
                     source=str(source), image_topic=image_topic, label_topic=label_topic, classes=classes)
    names = class_names(cfg)
    cs = build_recorded_clipset(cfg, degradation="realesrgan", pseudo_labels=False)
    val_every = max(2, round((n_train + n_val) / max(1, n_val)))
    for split in ("train", "val"):
        for sub in ("images", "labels"):
            shutil.rmtree(out / sub / split, ignore_errors=True)
            (out / sub / split).mkdir(parents=True)
    for i, (rgb, lab) in enumerate(zip(cs.frames[:, 0], cs.labels[:, 0])):
        split = "val" if n_val and i % val_every == val_every - 1 else "train"
        inst = np.zeros(lab.shape, np.int32)
        for c in np.unique(lab[lab > 0]):
            _, comp = cv2.connectedComponents((lab == c).astype(np.uint8))
            inst[comp > 0] = comp[comp > 0] + inst.max()
        name = f"{source.name}_{i:06d}"
        cv2.imwrite(str(out / "images" / split / f"{name}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        lines = [f"{cls} " + " ".join(f"{v:.5f}" for v in (poly / np.array([imgsz, imgsz])).clip(0, 1).reshape(-1))
                 for cls, poly in instance_polygons(lab, inst)]
        (out / "labels" / split / f"{name}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
    data = {"path": str(out.resolve()), "train": "images/train", "val": "images/val",
            "names": {i: n for i, n in enumerate(names[1:])}}
    (out / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return out / "data.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path(".cache/seg-train"), help="dataset and run directory")
    parser.add_argument("--train-images", type=int, default=1000)
    parser.add_argument("--val-images", type=int, default=100)
    parser.add_argument("--imgsz", type=int, default=320, help="training/inference size (input 512 is resized)")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--model", default="yolo11n-seg.yaml", help="ultralytics model YAML (random init)")
    parser.add_argument("--init", type=Path, default=None,
                        help="start from this local checkpoint instead of random init (fine-tuning, fresh schedule)")
    parser.add_argument("--lr0", type=float, default=None, help="initial learning rate (default: ultralytics' choice)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--workers", type=int, default=1, help="dataloader workers")
    parser.add_argument("--val", action="store_true", help="validate every epoch (slower)")
    parser.add_argument("--name", default="tabletop", help="run name under <out>/runs/")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/runs/<name>/weights/last.pt")
    parser.add_argument("--prepare-only", action="store_true")
    parser.add_argument("--install", type=Path, default=None, help="copy the final weights here (stripped)")
    g = parser.add_argument_group("own recordings instead of generated scenes (docs/own_robot.md)")
    g.add_argument("--data", type=Path, default=None,
                   help="rosbag2 folder, or folder of MP4 files / image sequences, with label maps (label topic "
                        "or NAME_labels/ PNGs); --train-images/--val-images frames are taken 0.5 s apart")
    g.add_argument("--image-topic", default="", help="rosbag2: camera topic")
    g.add_argument("--label-topic", default="", help="rosbag2: mono8 label topic")
    g.add_argument("--classes", default="", help="class list YAML (`classes: [background, ...]`); default tabletop")


def _export_beside(weights: Path, log=print) -> None:
    """The ONNX graph beside the weights, where the segmenter's onnx runtime finds it without exporting
    (a read-only install, a robot without the exporter's dependencies)."""
    dest = weights.with_suffix(".onnx")
    try:
        export_onnx(weights, dest)
    except Exception as exc:  # the weights are what training makes; the segmenter can still export them later
        log(f"ONNX export of {weights} failed ({type(exc).__name__}: {exc}); the segmenter exports on first use "
            "or runs the .pt in torch")
        return
    log(f"exported {dest} ({dest.stat().st_size / 1e6:.1f} MB)")


def _install(src: Path, dst: Path, log=print) -> None:
    """Copy a checkpoint without its optimizer state (ultralytics' strip_optimizer: fp16, a few MB)."""
    from ultralytics.utils.torch_utils import strip_optimizer

    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(".tmp.pt")
    shutil.copy(src, tmp)
    strip_optimizer(str(tmp))
    os.replace(tmp, dst)
    log(f"installed {dst} ({dst.stat().st_size / 1e6:.1f} MB)")


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("YOLO_VERBOSE", "True")
    import_ultralytics()
    import torch

    torch.set_num_threads(max(1, args.threads))
    t0 = time.perf_counter()
    if args.data is not None:
        data = prepare_recorded(args.out, args.data, args.train_images, args.val_images, args.imgsz,
                                image_topic=args.image_topic, label_topic=args.label_topic, classes=args.classes)
    else:
        data = prepare(args.out, args.train_images, args.val_images, args.imgsz)
    print(f"data ready in {time.perf_counter() - t0:.0f} s: {data}", flush=True)
    if args.prepare_only:
        return 0
    from ultralytics import YOLO

    run_dir = args.out / "runs"
    last = run_dir / args.name / "weights" / "last.pt"
    t1 = time.perf_counter()
    if args.resume:
        if not last.exists():
            print(f"--resume: no checkpoint at {last}", file=sys.stderr)
            return 2
        YOLO(str(last)).train(resume=True)
    else:
        if args.init is not None:
            if not args.init.is_file():
                print(f"--init: no checkpoint at {args.init}", file=sys.stderr)
                return 2
            model = YOLO(str(args.init), task="segment")
        else:
            model = YOLO(args.model)  # architecture from YAML: random init, nothing downloaded
        extra = {"lr0": args.lr0, "optimizer": "AdamW"} if args.lr0 is not None else {}
        model.train(
            **extra,
            data=str(data),
            epochs=args.epochs,
            imgsz=args.imgsz,
            batch=args.batch,
            device="cpu",
            workers=args.workers,
            amp=False,  # the AMP check would download yolo11n.pt
            plots=False,  # plots would download a font
            val=args.val,
            pretrained=args.init is not None,  # False would re-initialise an --init checkpoint
            project=str(run_dir.resolve()),
            name=args.name,
            exist_ok=True,
            # top-down scenes with a fixed camera height: small scale change, any rotation/flip
            mosaic=0.5,
            close_mosaic=max(1, args.epochs // 5),
            scale=0.25,
            degrees=0.0,
            flipud=0.5,
            fliplr=0.5,
            hsv_h=0.01,
            hsv_s=0.4,
            hsv_v=0.3,
            warmup_epochs=min(3.0, max(0.5, args.epochs / 10)),
            cache=True,  # decoded images in RAM: the CPU is the bottleneck, not memory
            patience=0,
            seed=0,
            deterministic=False,
            verbose=True,
        )
    print(f"training done in {(time.perf_counter() - t1) / 60:.1f} min", flush=True)
    if args.install is not None:
        _install(last, args.install)
    _export_beside(args.install if args.install is not None else last)
    return 0

