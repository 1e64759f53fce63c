"""``semcomm train <stage>``: train the backbone and the three adapters (paper V-D).

Stages, in order (``all`` runs them one after another for a preset, skipping finished ones):
  vae          the compact VAE (AutoencoderTiny) on tabletop frames
  backbone     the denoiser epsilon_theta (UNet2DConditionModel) with Eq. 3
  control      Semantic Control psi (ControlNet), Eq. 3 on (frame, label map), backbone frozen
  restoration  Restoration Adapter omega (W'K, W'V, W'O only), Eq. 3 on (clean, degraded)
  teacher      bidirectional Temporal Adapter phi over K frames, Eq. 3
  lcm          causal student (window W) initialised from the teacher, Eq. 5 on teacher samples
  dmd          student by Eq. 6 (DMD) alternating with a bidirectional critic by Eq. 3
  refiner      Semantic Refiner rho (ours) on the finished synthesizer's outputs through the whole chain

Multi-GPU: ``accelerate launch -m semcomm_ros train <stage> ...``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .config import PRESETS, STAGES, get_preset
from .export import export_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="stage", metavar="<stage>", required=True)
    for name in (*STAGES, "all"):
        p = sub.add_parser(name, help=(__doc__.split(f"  {name}")[1].split("\n")[0].strip()
                                       if f"  {name} " in __doc__ else "run every stage of the preset in order"))
        p.add_argument("--preset", default="tabletop",
                       help=f"one of {', '.join(PRESETS)} or a preset .json (default: tabletop)")
        p.add_argument("--out", default=None, help="run directory (default: runs/<preset>)")
        p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
        p.add_argument("--steps", type=int, default=None, help="override the number of optimiser steps")
        p.add_argument("--batch-size", type=int, default=None)
        p.add_argument("--lr", type=float, default=None)
        p.add_argument("--weight-decay", type=float, default=None, help="AdamW weight decay (paper: 1e-2)")
        p.add_argument("--grad-clip", type=float, default=None, help="gradient clipping norm (paper: 1)")
        p.add_argument("--grad-accum", type=int, default=None, help="gradient accumulation steps")
        p.add_argument("--seed", type=int, default=None)
        p.add_argument("--checkpoint-every", type=int, default=None)
        p.add_argument("--degradation", choices=("codec", "realesrgan", "mixed"), default=None,
                       help="restoration: degraded frames from the real low-res codec (default), the "
                            "Real-ESRGAN-style pipeline, or both")
        if name in ("vae", "backbone", "control", "restoration", "teacher", "refiner"):
            p.add_argument("--object-weight", type=float, default=None,
                           help="extra loss weight on object pixels, 0 = unweighted (tabletop preset: "
                                "9 for vae, 4 for the diffusion stages)")
        if name in ("control", "restoration", "teacher", "lcm", "dmd"):
            p.add_argument("--decoded-labels", type=float, default=None, metavar="SHARE",
                           help="share of samples conditioned on the label maps the operator receives "
                                "(robot segmenter, semantic codec, 2 kbps link; computed once and cached) "
                                "instead of the exact ones (default: the preset's)")
        if name in ("vae", "backbone"):
            p.add_argument("--init", default=None,
                           help="warm start from the vae/ or unet/ of this model directory (e.g. "
                                "semcomm_ros/synth/default_model); default: random init")
        _add_sources(p, pretrained=name not in ("vae", "backbone"))
        p.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default="no")
        p.add_argument("--no-progress", action="store_true", help="no progress bars")
        if name == "all":
            p.add_argument("--export", default=None,
                           help="copy the finished model to this directory (e.g. the shipped default path)")
            p.add_argument("--from-stage", choices=STAGES, default=None, help="start at this stage")
    _add_export(sub)


def _add_sources(p, pretrained: bool) -> None:
    """Where weights and clips come from: local public checkpoints and the user's own recordings."""
    if pretrained:
        g = p.add_argument_group("pretrained weights (local files only; nothing is downloaded)")
        g.add_argument("--pretrained", default=None, metavar="DIR_OR_FILE",
                       help="frozen backbone from a diffusers Stable Diffusion folder (model_index.json, unet/, "
                            "vae/, scheduler/, text_encoder/, tokenizer/) or a single .safetensors checkpoint")
        g.add_argument("--pretrained-config", default=None, metavar="DIR",
                       help="for a single-file --pretrained: a diffusers SD folder with its configs and tokenizer")
        g.add_argument("--motion-adapter", default=None, metavar="DIR_OR_FILE",
                       help="AnimateDiff MotionAdapter (folder or original motion-module file): the teacher phi")
        g.add_argument("--controlnet", default=None, metavar="DIR",
                       help="diffusers ControlNet folder to initialise psi (an RGB one gets the label palette)")
    g = p.add_argument_group("own recordings (default: the procedural tabletop scenes)")
    g.add_argument("--data", default=None, metavar="PATH",
                   help="a rosbag2 folder, or a folder of MP4 files / image-sequence folders (docs/own_robot.md)")
    g.add_argument("--image-topic", default=None, help="rosbag2: camera topic (sensor_msgs/Image or CompressedImage)")
    g.add_argument("--label-topic", default=None, help="rosbag2: mono8 label topic (default: the segmenter labels)")
    g.add_argument("--classes", default=None, metavar="YAML",
                   help="class list `classes: [background, ...]`, the one the robot's segmenter and codec use")
    g.add_argument("--segmenter", default=None, metavar="YAML",
                   help="segmentation config for pseudo-labels (default: the shipped config/segmentation.yaml)")


def with_sources(preset, args):
    """The preset with the command line's weight and data sources filled in."""
    from dataclasses import replace

    pre = {"backbone": getattr(args, "pretrained", None), "backbone_config": getattr(args, "pretrained_config", None),
           "motion_adapter": getattr(args, "motion_adapter", None), "controlnet": getattr(args, "controlnet", None)}
    data = {"source": getattr(args, "data", None), "image_topic": getattr(args, "image_topic", None),
            "label_topic": getattr(args, "label_topic", None), "classes": getattr(args, "classes", None),
            "segmenter": getattr(args, "segmenter", None)}
    pre = {k: str(v) for k, v in pre.items() if v is not None}
    data = {k: str(v) for k, v in data.items() if v is not None}
    return replace(preset, pretrained=replace(preset.pretrained, **pre), data=replace(preset.data, **data))


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="copy a trained run's model to the synthesizer's default path")
    p.add_argument("--preset", default="tabletop")
    p.add_argument("--out", default=None, help="run directory (default: runs/<preset>)")
    p.add_argument("--to", default=None, help="destination (default: semcomm_ros/synth/default_model)")


def _overrides(args) -> dict:
    return {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "weight_decay": args.weight_decay,
            "grad_clip": args.grad_clip, "grad_accum": args.grad_accum, "seed": args.seed,
            "checkpoint_every": args.checkpoint_every, "degradation": args.degradation,
            "object_weight": getattr(args, "object_weight", None), "init": getattr(args, "init", None),
            "decoded_labels": getattr(args, "decoded_labels", None)}


def run(args) -> int:
    # deferred: the pipeline imports torch (~2 s), which `semcomm train --help` need not load
    from .pipeline import run_stage

    try:
        preset = get_preset(args.preset)
        if args.stage != "export":
            preset = with_sources(preset, args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    root = Path(args.out or f"runs/{preset.name}")
    if args.stage == "export":
        from semcomm_ros.synth.model import DEFAULT_MODEL_DIR  # deferred: imports torch, as the pipeline does

        try:
            dest = export_model(root / "model", args.to or DEFAULT_MODEL_DIR)
        except (ValueError, FileNotFoundError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"exported {root / 'model'} -> {dest}")
        return 0
    ov = _overrides(args)
    for k in ("steps", "batch_size", "grad_accum"):
        if ov[k] is not None and ov[k] <= 0:
            print(f"error: --{k.replace('_', '-')} must be positive, got {ov[k]}", file=sys.stderr)
            return 2
    stages = [args.stage] if args.stage != "all" else list(STAGES)
    if args.stage == "all" and args.from_stage:
        stages = stages[stages.index(args.from_stage):]
    for st in stages:
        if preset.stage(st).steps <= 0 and (args.stage == "all" or ov["steps"] is None):
            why = {"vae": preset.pretrained.backbone, "backbone": preset.pretrained.backbone,
                   "teacher": preset.pretrained.motion_adapter}.get(st)
            print(f"[{st}] skipped: 0 steps in preset {preset.name}"
                  + (f"; pretrained: {why}" if why else "")
                  + ("" if args.stage == "all" else " (--steps N runs it)"))
            continue
        try:
            info = run_stage(st, preset, root, resume=args.resume, overrides=ov if args.stage != "all" else
                             {k: v for k, v in ov.items() if k not in ("steps", "batch_size", "lr")},
                             progress=not args.no_progress, mixed_precision=args.mixed_precision)
        except (ValueError, FileNotFoundError, RuntimeError) as exc:
            print(f"error: [{st}] {exc}", file=sys.stderr)
            return 1
        print(f"[{st}] " + json.dumps({k: v for k, v in info.items() if k != "loss"}, default=str))
    if args.stage == "all" and getattr(args, "export", None):
        dest = export_model(root / "model", args.export)
        print(f"exported to {dest}")
    return 0
