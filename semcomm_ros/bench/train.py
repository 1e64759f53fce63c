"""``semcomm bench train``: trainable parameters per stage (paper Table I) and seconds per step.

Prints, for the chosen preset's architecture (random weights; nothing is downloaded):
- the parameters each stage trains against the whole model (backbone + VAE + adapters), and the
  same for an SD-1.5-sized configuration (UNet 860 M, its ControlNet and an AnimateDiff-sized
  MotionAdapter, built on the meta device so no memory is spent), next to the paper's Table I:
  4.1e6 parameters for Temporal-Adapter-only distillation vs 1.3e9 for full distillation;
- seconds per optimiser step of every stage on this machine with the ``tiny`` preset (or the
  preset given), measured after one warm-up step.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import torch

from semcomm_ros.synth.adapters import ADAPTERS, PHI
from semcomm_ros.synth.backbone import sd15_unet_config
from semcomm_ros.synth.restoration_adapter import RestorationAdapter
from semcomm_ros.synth.temporal_adapter import build_motion_adapter
from semcomm_ros.training import adapters as ad
from semcomm_ros.training.assembly import random_model
from semcomm_ros.training.backbone import BackboneStage, VAEStage
from semcomm_ros.training.config import STAGES, get_preset
from semcomm_ros.training.data import BatchSampler, build_clipset
from semcomm_ros.training.trainer import Trainer, fmt_count


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="tiny", help="preset whose stages are timed (default: tiny)")
    parser.add_argument("--params-preset", default="tabletop", help="preset whose parameters are counted")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per stage (after 1 warm-up)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-sd15", action="store_true", help="skip the SD-1.5-sized parameter count")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")


def stage_parameter_table(model) -> dict:
    c = model.parameter_counts()
    total = c["total"]
    phi = c[PHI.count_key]
    rows = {
        "vae": c["vae"], "backbone": c["backbone_unet"],
        **{f"{a.stage} ({a.symbol})": c[a.count_key] for a in ADAPTERS},
        "lcm (phi^-)": phi, "dmd (phi^- + critic)": 2 * phi,
        "full distillation (theta^- + phi^-)": c["backbone_unet"] + phi,
    }
    return {"total": total, "stages": rows}


def sd15_parameter_table() -> dict:
    """SD-1.5-shaped backbone + ControlNet + MotionAdapter counted on the meta device."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel(**sd15_unet_config())
        cn = ControlNetModel.from_unet(unet, conditioning_channels=13)
        omega = RestorationAdapter.from_unet(unet, init="random")
        # AnimateDiff v1.5 motion modules: 2 transformer blocks... at every level, 32 positions
        phi = build_motion_adapter(unet, num_attention_heads=8, max_seq_length=32)

    def n(m):
        return sum(p.numel() for p in m.parameters())

    rows = {"backbone": n(unet), "control (psi)": n(cn), "restoration (omega)": n(omega),
            "temporal (phi)": n(phi), "full distillation (theta^- + phi^-)": n(unet) + n(phi)}
    return {"total": n(unet) + n(cn) + n(omega) + n(phi), "stages": rows}


def time_stages(preset_name: str, steps: int) -> dict:
    import copy

    preset = get_preset(preset_name)
    clips = build_clipset(preset.data, degradation="realesrgan", cache=preset_name != "tiny", progress=False)
    out = {}
    import tempfile
    from pathlib import Path

    tmp = Path(tempfile.mkdtemp(prefix="semcomm-bench-train-"))
    model = random_model(preset)
    enc = ad.EncodedClips.build(model, clips, cache_file=None, progress=False)
    teacher = copy.deepcopy(model.temporal)
    for stage in STAGES:
        cfg = replace(preset.stage(stage), checkpoint_every=0, steps=steps + 1)
        if cfg.batch_size <= 0:
            continue
        sampler = BatchSampler(clips, cfg.batch_size, frames=cfg.frames, seed=0)
        # the lambdas below read this iteration's cfg, and the Trainer runs them in this iteration (B023)
        batch_fn, phases = sampler.batch, None
        if stage == "vae":
            mod = VAEStage(preset.backbone)
        elif stage == "backbone":
            lat = enc.clean.shape[-1]
            mod = BackboneStage(preset.backbone, lat)
            batch_fn = lambda s: {"latents": enc.clean[:, 0, 0][:cfg.batch_size]}  # noqa: E731, B023
        elif stage == "control":
            mod = ad.ControlStage(random_model(preset), enc, cfg)
        elif stage == "restoration":
            mod = ad.RestorationStage(random_model(preset), enc, cfg)
        elif stage == "teacher":
            mod = ad.TeacherStage(random_model(preset), enc, cfg)
        elif stage == "lcm":
            m = random_model(preset)
            samples = ad.sample_teacher(m, teacher, enc, clips, replace(cfg, teacher_samples=2, teacher_steps=2),
                                        progress=False)
            mod = ad.LCMStage(m, enc, cfg, teacher, samples)
            batch_fn = lambda s: {"sample": [0, 1][:cfg.batch_size] * cfg.batch_size}  # noqa: E731, B023
        else:
            m = random_model(preset)
            mod = ad.DMDStage(m, enc, cfg, teacher, copy.deepcopy(teacher))
            phases = {"student": mod.student_parameters(), "critic": mod.critic_parameters()}
        tr = Trainer(mod, cfg, tmp / stage, batch_fn, phases=phases, progress=False, cpu=True)
        tr.run(1)
        t0 = time.perf_counter()
        tr.run(1 + steps)
        out[stage] = {"sec_per_step": (time.perf_counter() - t0) / steps, "batch_size": cfg.batch_size,
                      "frames": cfg.frames}
    return out


def _fmt(n: int) -> str:
    return fmt_count(int(n))


def run(args) -> int:
    torch.set_num_threads(max(1, args.threads))
    report = {}
    model = random_model(get_preset(args.params_preset))
    tab = stage_parameter_table(model)
    report["params"] = {args.params_preset: tab}
    print(f"Trainable parameters per stage ({args.params_preset} preset; whole model {tab['total']:,}):")
    for k, v in tab["stages"].items():
        print(f"  {k:<38} {v:>14,}  ({_fmt(v)}, {100 * v / tab['total']:.1f} % of the model)")
    if not args.no_sd15:
        sd = sd15_parameter_table()
        report["params"]["sd15"] = sd
        print(f"\nSD-1.5-sized configuration (whole model {sd['total']:,}):")
        for k, v in sd["stages"].items():
            print(f"  {k:<38} {v:>14,}  ({_fmt(v)})")
        print("  paper Table I: temporal-only distillation 4.1e6 parameters vs full distillation 1.3e9")
    times = time_stages(args.preset, args.steps)
    report["seconds_per_step"] = {args.preset: times}
    dev = "GPU " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else \
        f"CPU, {torch.get_num_threads()} torch threads"
    print(f"\nSeconds per optimiser step ({args.preset} preset, {dev}, mean of {args.steps} after 1 warm-up):")
    for k, v in times.items():
        print(f"  {k:<12} {v['sec_per_step']:8.3f} s/step   batch {v['batch_size']} x {v['frames']} frame(s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0
