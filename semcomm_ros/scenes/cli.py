"""``semcomm scenes``: render a generated tabletop clip to an MP4 (or a PNG strip of frames).

Examples::

    semcomm scenes --seed 0 --frames 50 --out clip.mp4            # RGB | label map side by side
    semcomm scenes --seed 3 --frames 40 --out strip.png --every 8  # PNG contact strip
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from .classes import colorize
from .generator import TABLE_STYLES, tabletop_clip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="scene seed (a clip is a pure function of it)")
    parser.add_argument("--frames", type=int, default=50, help="number of frames (10 fps)")
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--objects", type=int, default=None, help="number of objects (default: random 3..8)")
    parser.add_argument("--table", choices=TABLE_STYLES, default=None, help="table texture family")
    parser.add_argument("--out", type=Path, default=Path("clip.mp4"), help=".mp4 video or .png strip")
    parser.add_argument("--no-labels", action="store_true", help="RGB only (default: RGB | colourised labels)")
    parser.add_argument("--every", type=int, default=10, help="PNG strip: take every N-th frame")


def _compose(rgb: np.ndarray, labels: np.ndarray, with_labels: bool) -> np.ndarray:
    return np.concatenate([rgb, colorize(labels)], 1) if with_labels else rgb


def _write_mp4(path: Path, frames: list[np.ndarray], fps: int = 10) -> None:
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as box:
        st = box.add_stream("libx264", rate=fps)
        # yuv420p needs even sizes
        st.width, st.height = w - w % 2, h - h % 2
        st.pix_fmt = "yuv420p"
        st.options = {"crf": "18"}
        for f in frames:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f[: st.height, : st.width]), format="rgb24")
            for pkt in st.encode(vf):
                box.mux(pkt)
        for pkt in st.encode():
            box.mux(pkt)


def run(args: argparse.Namespace) -> int:
    if args.frames < 1:
        print("--frames must be >= 1", file=sys.stderr)
        return 2
    opts = {}
    if args.objects is not None:
        opts["n_objects"] = args.objects
    if args.table is not None:
        opts["table"] = args.table
    t0 = time.perf_counter()
    frames = [
        _compose(rgb, lab, not args.no_labels)
        for rgb, lab in tabletop_clip(args.seed, args.frames, args.width, args.height, **opts)
    ]
    gen_s = time.perf_counter() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    suffix = args.out.suffix.lower()
    if suffix == ".png":
        import cv2

        strip = np.concatenate(frames[:: max(1, args.every)], 0 if not args.no_labels else 1)
        cv2.imwrite(str(args.out), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
    elif suffix in (".mp4", ".mkv"):
        _write_mp4(args.out, frames)
    else:
        print(f"--out must end in .mp4, .mkv or .png, got {args.out}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {len(frames)} frames {args.width}x{args.height}, generated in {gen_s:.2f} s "
          f"({1000 * gen_s / len(frames):.1f} ms/frame)")
    return 0

