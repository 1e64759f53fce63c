"""``semcomm bench vae``: VAE ceiling (segmenter mIoU, PSNR) and ms/frame of candidate autoencoders.

Issue 22's "measure first": what a latent of a given shape can carry before any diffusion stage is
trained on it. The tuning clips (``splits.TUNING_SEEDS``) are rendered at the camera size, brought
to the candidate's input size and through its encoder and decoder, and scored as the
``vae-ceiling`` row of ``semcomm eval`` is (``eval.report.to_model_size`` then ``eval.report.score``:
bicubic to the camera size, the shipped segmenter against the exact labels, pixels pooled per clip,
mean over clips). Unlike that row, no Semantic Refiner and no label-guided upsampling: the figure
is the autoencoder's alone, the "VAE ceiling" row of the model card's loss budget. The reference
row ``clean@S`` is the clean frames brought to S and back: what any autoencoder at S can reach.

Candidates: ``default`` (the shipped model's ``vae/``), a diffusers VAE directory, a model directory
holding ``vae/``, or a ``semcomm train vae`` checkpoint (``<run>/vae/checkpoints/step_<n>``, built
from ``<run>/preset.json``), each optionally ``@SIZE`` for its input size (default ``--size``).
ms/frame: encode + decode of one frame, median over the frames after a warm-up, on ``--threads``, the
candidates interleaved frame by frame (on shared cores other jobs then weigh on all alike).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from semcomm_ros.eval import metrics as M
from semcomm_ros.eval.report import score, to_model_size
from semcomm_ros.scenes import tabletop_clip
from semcomm_ros.scenes.splits import TUNING_SEEDS
from semcomm_ros.segmentation import load_segmenter
from semcomm_ros.synth import backbone as sbb
from semcomm_ros.synth.model import DEFAULT_MODEL_DIR
from semcomm_ros.synth.synthesizer import _to_uint8
from semcomm_ros.training.backbone import build_vae
from semcomm_ros.training.config import Preset
from semcomm_ros.training.data import to_tensor_images


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("vaes", nargs="+", metavar="VAE[@SIZE]",
                        help="default | VAE dir | model dir with vae/ | <run>/vae/checkpoints/step_<n>; "
                             "@SIZE: its input size (default --size)")
    parser.add_argument("--size", type=int, default=128, help="input size of the candidates (square)")
    parser.add_argument("--clips", type=int, default=len(TUNING_SEEDS), help="tuning clips (splits.TUNING_SEEDS)")
    parser.add_argument("--frames", type=int, default=8, help="frames per clip")
    parser.add_argument("--camera", type=int, default=512, help="camera size: render and score at this size")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the ms/frame figure)")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")


def parse_candidate(spec: str, size: int) -> tuple[str, int]:
    path, sep, s = spec.rpartition("@")
    return (path, int(s)) if sep and s.isdigit() else (spec, size)


def load_candidate(path: str):
    """An autoencoder from any of the places the module docstring names, in eval mode."""
    if path == "default":
        path = str(DEFAULT_MODEL_DIR / "vae")
    p = Path(path)
    if (p / "trainer.json").is_file():
        return _from_checkpoint(p)
    if not (p / "config.json").is_file() and (p / "vae").is_dir():
        p = p / "vae"
    return sbb.load_vae(p).eval().requires_grad_(False)


def _from_checkpoint(ckpt: Path):
    # the trainer saves the whole VAEStage (keys "vae.*"); the run's preset rebuilds its architecture
    from safetensors.torch import load_file

    preset_file = ckpt.parents[2] / "preset.json"
    if not preset_file.is_file():
        raise FileNotFoundError(f"{ckpt} is a checkpoint, but its run has no {preset_file}")
    vae = build_vae(Preset.load(preset_file).backbone)
    state = load_file(str(ckpt / "model.safetensors"))
    vae.load_state_dict({k.removeprefix("vae."): v for k, v in state.items() if k.startswith("vae.")})
    return vae.eval().requires_grad_(False)


@torch.inference_mode()
def reconstruct(vae, images: list[np.ndarray]) -> tuple[list[np.ndarray], list[float], tuple[int, ...]]:
    """E then D of each frame alone (batch 1, as the synthesizer runs): frames, seconds each, latent shape."""
    out, secs, shape = [], [], ()
    for im in images:
        t0 = time.perf_counter()
        z = sbb.encode_images(vae, to_tensor_images(im[None]))
        rec = sbb.decode_latents(vae, z)
        secs.append(time.perf_counter() - t0)
        out.append(_to_uint8(rec)[0])
        shape = tuple(z.shape[1:])
    return out, secs, shape


def _clip_scores(clips, outputs, seg, camera: int, fps: float) -> dict:
    """mIoU and PSNR at the camera size, per clip as ``semcomm eval`` scores them, mean over clips."""
    rows = [score(out, rgb, gt, seg, 0, fps, camera, None) for (rgb, gt), out in zip(clips, outputs, strict=True)]
    return {k: float(np.mean([r[k] for r in rows])) for k in ("miou", "psnr")}


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(max(1, args.threads))
    if not 1 <= args.clips <= len(TUNING_SEEDS) or args.frames < 1:
        print(f"error: --clips must be 1..{len(TUNING_SEEDS)} and --frames >= 1", file=sys.stderr)
        return 2
    seeds = list(TUNING_SEEDS)[:args.clips]
    fps = 10.0
    clips = []
    for seed in seeds:
        clip = list(tabletop_clip(seed, args.frames, width=args.camera, height=args.camera))
        clips.append(([c[0] for c in clip], [c[1] for c in clip]))
    cands = [parse_candidate(s, args.size) for s in args.vaes]
    inputs = {size: [[to_model_size(f, (size, size)) for f in rgb] for rgb, _ in clips]
              for size in dict.fromkeys(s for _, s in cands)}
    rows = [{"candidate": f"clean@{size}", "size": size, "outputs": small} for size, small in inputs.items()]
    # every candidate is timed before the segmenter first runs (ONNX Runtime's threads keep spinning
    # for a while after a call and would take the cores from torch), all of them interleaved frame
    # by frame, so that other jobs on shared cores weigh on every candidate alike
    vaes = [load_candidate(path) for path, _ in cands]
    for vae, (_, size) in zip(vaes, cands):
        reconstruct(vae, inputs[size][0][:1] * 3)  # warm-up: the first calls allocate
    outputs = [[[] for _ in clips] for _ in cands]
    secs: list[list[float]] = [[] for _ in cands]
    shapes: list[tuple[int, ...]] = [() for _ in cands]
    for c in range(len(clips)):
        for k in range(args.frames):
            for i, (vae, (_, size)) in enumerate(zip(vaes, cands)):
                rec, t, shapes[i] = reconstruct(vae, [inputs[size][c][k]])
                outputs[i][c].append(rec[0])
                secs[i].extend(t)
    for i, (path, size) in enumerate(cands):
        psnr_in = [M.psnr(np.stack(o), np.stack(x)) for o, x in zip(outputs[i], inputs[size], strict=True)]
        rows.append({"candidate": path, "size": size, "latent": "x".join(map(str, shapes[i])),
                     "params": int(sum(p.numel() for p in vaes[i].parameters())), "outputs": outputs[i],
                     "psnr_input": float(np.mean(psnr_in)), "ms_per_frame": 1e3 * float(np.median(secs[i]))})
    # ms/frame on shared cores depends on what else runs: the load says how far to trust it
    load = os.getloadavg()[0]
    seg = load_segmenter()
    print(f"VAE ceiling: {len(seeds)} tuning clips {seeds} x {args.frames} frames, rendered and scored at "
          f"{args.camera}x{args.camera} (shipped segmenter, exact labels); torch threads {torch.get_num_threads()}, "
          f"load average {load:.2f} after the timing")
    print(f"{'candidate':<44}{'input':>6}{'latent':>11}{'params':>9}{'mIoU':>8}{'PSNR@cam':>9}{'PSNR@in':>9}"
          f"{'ms/frame':>10}")
    for row in rows:
        row.update(_clip_scores(clips, row.pop("outputs"), seg, args.camera, fps))
        ref = "latent" not in row
        print(f"{row['candidate'][-44:]:<44}{row['size']:>6}{row.get('latent', '-'):>11}"
              f"{'-' if ref else format(row['params'], ','):>9}{row['miou']:>8.3f}{row['psnr']:>9.2f}"
              f"{'-' if ref else format(row['psnr_input'], '.2f'):>9}"
              f"{'-' if ref else format(row['ms_per_frame'], '.1f'):>10}")
    if args.json:
        meta = {"clips": seeds, "frames": args.frames, "camera": args.camera, "threads": torch.get_num_threads(),
                "load_average": load}
        Path(args.json).write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")
    return 0
