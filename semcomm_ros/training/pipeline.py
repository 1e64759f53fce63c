"""Run one training stage of a preset end to end: data, stage module, Trainer, export.

Layout of a run directory ``<root>`` (default ``runs/<preset>``):

    <root>/preset.json            the preset used (written by every stage)
    <root>/<stage>/log.csv        loss log of the stage
    <root>/<stage>/checkpoints/   accelerate states, newest two kept (``--resume`` continues)
    <root>/model/                 the assembled model in the synthesizer's layout
                                  (vae/, unet/, scheduler/, then the adapters' files)
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from semcomm_ros.synth.backbone import load_unet, load_vae

from . import adapters
from .assembly import _trained, assemble_model
from .backbone import BackboneStage, LatentCache, VAEStage, latent_scaling_factor, save_backbone
from .config import STAGES, Preset, StageConfig
from .data import BatchSampler, render_clip, to_tensor_images
from .refiner import plan_refiner
from .sources import load_clips
from .trainer import Plan, Trainer, count_params


def _threads() -> None:
    # 2 cores shared by several processes: never oversubscribe. On a machine where another job
    # keeps one core busy, SEMCOMM_TRAIN_THREADS=1 is several times faster than 2 spinning threads.
    import os

    n = int(os.environ.get("SEMCOMM_TRAIN_THREADS", "0") or 0)
    torch.set_num_threads(n if n > 0 else min(2, torch.get_num_threads()))


def stage_config(preset: Preset, stage: str, overrides: dict | None = None):
    cfg = preset.stage(stage)
    if overrides:
        cfg = replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    return cfg


def _record(root: Path, stage: str, info: dict) -> None:
    path = root / "stages.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[stage] = info
    path.write_text(json.dumps(data, indent=2) + "\n")


def run_stage(stage: str, preset: Preset, root: str | Path, resume: bool = False, overrides: dict | None = None,
              progress: bool = True, mixed_precision: str = "no") -> dict:
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    _threads()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    preset.save(root / "preset.json")
    cfg = stage_config(preset, stage, overrides)
    if cfg.steps <= 0:
        raise ValueError(f"stage {stage!r} has 0 steps in preset {preset.name!r} (the paper uses pretrained weights "
                         "for it); pass --steps")
    if stage in ("vae", "backbone") and preset.pretrained.backbone:
        raise ValueError(f"stage {stage!r} trains the compact backbone, but this run's backbone is the pretrained "
                         f"{preset.pretrained.backbone} (frozen); leave the stage out")
    t0 = time.time()
    plan = STAGE_PLANS[stage](preset, cfg, root, resume=resume, progress=progress)
    trainer = Trainer(plan.module, cfg, root / stage, plan.batch_fn, phases=plan.phases, phase_lr=plan.phase_lr,
                      progress=progress, mixed_precision=mixed_precision)
    if resume:
        trainer.load_checkpoint()
    info = trainer.run()
    info.update(plan.info)
    info.update(plan.finish(trainer.unwrap()))
    info.update({"stage": stage, "wall_s_this_run": round(time.time() - t0, 1), "steps_config": cfg.steps,
                 "batch_size": cfg.batch_size, "lr": cfg.lr, "device": _device_name()})
    _record(root, stage, info)
    return info


def _device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    import os
    import platform

    return (f"CPU {platform.processor() or platform.machine()} x{os.cpu_count()} "
            f"(torch threads {torch.get_num_threads()})")


def _clips(preset: Preset, progress: bool = True):
    # the vae and backbone stages use no degraded frames; "realesrgan" is the cheap one to make
    return load_clips(preset.data, degradation="realesrgan", progress=progress)


def _plan_vae(preset: Preset, cfg: StageConfig, root: Path, resume: bool, progress: bool) -> Plan:
    clips = _clips(preset, progress)
    vae = None
    if cfg.init:
        vae = load_vae(Path(cfg.init) / "vae")
        vae.train().requires_grad_(True)
    stage = VAEStage(preset.backbone, vae, object_weight=cfg.object_weight)

    def finish(st) -> dict:
        vae = st.vae.eval()
        sf = latent_scaling_factor(vae, clips)
        save_backbone(root / "model", vae, None, sf, preset.backbone)
        return {"trainable_params": count_params(vae.parameters()), "scaling_factor": sf,
                "heldout_psnr_db": vae_heldout_psnr(vae, preset)}

    return Plan(stage, BatchSampler(clips, cfg.batch_size, frames=1, seed=cfg.seed).batch, finish)


@torch.no_grad()
def vae_heldout_psnr(vae, preset: Preset, seeds=(0, 1, 2, 3), frames: int = 8) -> float:
    """Reconstruction PSNR of the VAE on held-out clips (seeds outside the training range)."""
    import numpy as np

    errs = []
    for s in seeds:
        rgb, _ = render_clip(s, frames, preset.data.resolution)
        rec = vae.decode(vae.encode(to_tensor_images(rgb)).latents).sample.clamp(-1, 1)
        rec = ((rec + 1) * 127.5).round().permute(0, 2, 3, 1).numpy()
        errs.append(np.mean((rec - rgb.astype(np.float64)) ** 2))
    return round(float(10 * np.log10(255.0 ** 2 / np.mean(errs))), 2)


def _plan_backbone(preset: Preset, cfg: StageConfig, root: Path, resume: bool, progress: bool) -> Plan:
    clips = _clips(preset, progress)
    vae = load_vae(_trained(root, "vae", "vae"))
    sf = float(vae.config.scaling_factor)
    vae.eval().requires_grad_(False)
    cache = LatentCache.build(vae, clips, sf, progress=progress, patch=preset.backbone.latent_patch)
    stage = BackboneStage(preset.backbone, cache.latents.shape[-1], cache, object_weight=cfg.object_weight)
    if cfg.init:
        stage.unet.load_state_dict(load_unet(Path(cfg.init) / "unet").state_dict())

    def finish(st) -> dict:
        unet = st.unet.eval()
        save_backbone(root / "model", None, unet, sf, preset.backbone)
        # the synthesizer's model directory, with no-op adapters until their stages have run
        assemble_model(preset, root).save_pretrained(root / "model")
        return {"trainable_params": count_params(unet.parameters())}

    return Plan(stage, BatchSampler(clips, cfg.batch_size, frames=1, seed=cfg.seed).batch, finish)


#: stage name -> plan(preset, cfg, root, resume, progress): every stage runs through run_stage
STAGE_PLANS = {"vae": _plan_vae, "backbone": _plan_backbone, "control": adapters.plan_control,
               "restoration": adapters.plan_restoration, "teacher": adapters.plan_teacher,
               "lcm": adapters.plan_lcm, "dmd": adapters.plan_dmd, "refiner": plan_refiner}
assert tuple(STAGE_PLANS) == STAGES
