"""The whole-chain options that ``semcomm demo`` and ``semcomm eval`` share, with their one set of checks."""

from __future__ import annotations

import argparse

from semcomm_ros.synth.config import NOISE_MODES, RUNTIMES, valid_strength
from semcomm_ros.system import ChainConfig


def add_chain_arguments(p: argparse.ArgumentParser, frames: int) -> None:
    p.add_argument("--frames", type=int, default=frames, help="frames per clip (default: %(default)s)")
    p.add_argument("--size", type=int, default=512, help="camera resolution, square (default: %(default)s)")
    p.add_argument("--fps", type=float, default=10.0, help="camera frame rate (default: %(default)s)")
    p.add_argument("--link-kbps", type=float, default=2.0,
                   help="link cap, and the total rate every method gets (default: %(default)s)")
    p.add_argument("--lowres-kbps", type=float, default=ChainConfig.lowres_kbps,
                   help="the low-res stream's share of the link; the robot's rate controller holds both "
                        "streams together to --link-kbps from the first frame (default: %(default)s: a 4 s "
                        "clip pays the low-res stream's first keyframe, ~1 kbit, within it, and the semantic "
                        "stream keeps its ~1 kbps)")
    p.add_argument("--fixed-rate", action="store_true",
                   help="xi (the profile's) and --lowres-kbps fixed instead of the rate controller: the "
                        "first I-frame and keyframe then take a short clip over the link's rate")
    p.add_argument("--profile", default="tracked", choices=("tracked", "paper"), help="semantic codec profile")
    p.add_argument("--model", default=None, help="synthesizer directory (default: the shipped tabletop model)")
    p.add_argument("--strength", type=float, default=None,
                   help="share of the T denoising steps run, starting from the received low-res frame "
                        "(0 < s <= 1; 1 = from pure noise as in the paper; default: the model's)")
    p.add_argument("--noise", default=None, choices=NOISE_MODES,
                   help="noise draws: each frame its own (the paper) or the first frame's for the whole "
                        "stream (less flicker); default: the model's")
    p.add_argument("--segmenter", default="ultralytics", choices=("ultralytics", "labels"),
                   help="robot-side segmentation: the shipped model, or ground-truth labels (the output is "
                        "always scored with the shipped segmenter)")
    p.add_argument("--device", default=None, help="torch device for synthesis (default: cuda if present, else cpu)")
    p.add_argument("--runtime", default=None, choices=RUNTIMES,
                   help="where the synthesizer's networks run: onnx (ONNX Runtime graphs, exported once per "
                        "model into the user's cache) or torch (eager); default: the model's (onnx for the "
                        "shipped one; torch, with a logged reason, where onnxruntime is missing)")


def check_chain_arguments(args) -> None:
    """ValueError naming the option for anything the chain cannot run with."""
    if args.frames < 2:
        raise ValueError(f"--frames must be >= 2, got {args.frames}")
    if args.size % 32 or not 64 <= args.size <= 2048:
        raise ValueError(f"--size must be a multiple of 32 within 64..2048, got {args.size}")
    if not 1 <= args.fps <= 60:
        raise ValueError(f"--fps must be within 1..60, got {args.fps}")
    if args.link_kbps <= 0 or args.lowres_kbps <= 0:
        raise ValueError("--link-kbps and --lowres-kbps must be > 0")
    if args.lowres_kbps >= args.link_kbps:
        raise ValueError(f"--lowres-kbps ({args.lowres_kbps}) must leave room on the link ({args.link_kbps} kbps) "
                         "for the semantic stream")
    if args.strength is not None and not valid_strength(args.strength):
        raise ValueError(f"--strength must be in (0, 1], got {args.strength}")


def chain_kwargs(args) -> dict:
    """The ``eval.report.evaluate_clip`` keywords these options set."""
    return {"frames": args.frames, "size": args.size, "fps": args.fps, "link_kbps": args.link_kbps,
            "lowres_kbps": args.lowres_kbps, "rate_control": not args.fixed_rate, "profile": args.profile,
            "segmenter": args.segmenter,
            "device": args.device, "runtime": args.runtime, "strength": args.strength, "noise": args.noise}
