"""The common trainer of every stage: accelerate, AdamW, clipping, checkpoints, resume, logs.

One loop serves all stages. A stage is an ``nn.Module`` whose ``forward(batch, step, phase)``
returns the scalar loss of one optimiser ``phase`` (most stages have the single phase "main"; DMD
alternates "student" and "critic", each with its own optimiser, as in the paper's Fig. 4).

- Devices: ``accelerate.Accelerator`` -- one CPU, one GPU, or several GPUs/nodes when started
  with ``accelerate launch -m semcomm_ros train ...``; no home-made launcher.
- Optimiser: AdamW with weight decay 1e-2 and gradient clipping 1 (paper V-D), configurable.
- Checkpoints: ``accelerator.save_state`` every ``checkpoint_every`` steps into
  ``<out>/checkpoints/step_<n>``; ``--resume`` continues from the newest one exactly (batches are a
  pure function of the step, see ``data.BatchSampler``).
- Logs: a tqdm bar with loss and it/s, and ``<out>/log.csv`` (step, phase, loss, lr, sec/step).
"""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .config import StageConfig


def set_seed(seed: int) -> None:
    from accelerate.utils import set_seed as _set

    _set(seed)


@dataclass
class Plan:
    """What one stage hands the generic runner (pipeline.run_stage): its module, its batches, what to
    do with the trained module (``finish`` returns figures to record), and per-phase optimiser setup."""

    module: nn.Module
    batch_fn: Callable[[int], dict]
    finish: Callable[[nn.Module], dict]
    phases: dict[str, list[nn.Parameter]] | None = None
    phase_lr: dict[str, float] | None = None
    info: dict = field(default_factory=dict)  # figures known before training


class Trainer:
    def __init__(self, stage: nn.Module, cfg: StageConfig, out_dir: str | Path,
                 batch_fn: Callable[[int], dict], phases: dict[str, list[nn.Parameter]] | None = None,
                 phase_lr: dict[str, float] | None = None, mixed_precision: str = "no",
                 progress: bool = True, cpu: bool | None = None):
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs

        self.cfg = cfg
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.progress = progress
        if cpu is None:
            cpu = not torch.cuda.is_available()
        self.accelerator = Accelerator(
            cpu=cpu,
            mixed_precision=mixed_precision,
            gradient_accumulation_steps=cfg.grad_accum,
            # frozen branches and per-phase parameter sets leave parameters without gradients
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        )
        set_seed(cfg.seed + self.accelerator.process_index)
        if phases is None:
            phases = {"main": [p for p in stage.parameters() if p.requires_grad]}
        for name, params in phases.items():
            if not params:
                raise ValueError(f"phase {name!r} has no trainable parameters")
        self.phases = list(phases)
        lrs = phase_lr or {}
        opts = [torch.optim.AdamW(params, lr=lrs.get(name, cfg.lr), weight_decay=cfg.weight_decay)
                for name, params in phases.items()]
        scheds = [torch.optim.lr_scheduler.LambdaLR(o, self._lr_lambda) for o in opts]
        prepared = self.accelerator.prepare(stage, *opts, *scheds)
        self.stage = prepared[0]
        n = len(opts)
        self.opts = dict(zip(self.phases, prepared[1:1 + n]))
        self.scheds = dict(zip(self.phases, prepared[1 + n:1 + 2 * n]))
        self.params = phases
        self.batch_fn = batch_fn
        self.step = 0

    def _lr_lambda(self, step: int) -> float:
        w, h = self.cfg.warmup_steps, self.cfg.lr_halve_at
        return (min(1.0, (step + 1) / w) if w > 0 else 1.0) * (0.5 if 0 < h <= step else 1.0)

    # -- checkpoints -------------------------------------------------------------------------
    @property
    def ckpt_dir(self) -> Path:
        return self.out / "checkpoints"

    def checkpoints(self) -> list[Path]:
        if not self.ckpt_dir.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.ckpt_dir.iterdir()
                 if (m := re.fullmatch(r"step_(\d+)", p.name)) and (p / "trainer.json").is_file()]
        return [p for _, p in sorted(found)]

    def save_checkpoint(self, keep: int = 2) -> Path:
        path = self.ckpt_dir / f"step_{self.step}"
        self.accelerator.wait_for_everyone()
        self.accelerator.save_state(str(path), safe_serialization=True)
        if self.accelerator.is_main_process:
            (path / "trainer.json").write_text(json.dumps({"step": self.step, "config": self.cfg.to_dict()}))
            for old in self.checkpoints()[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
        return path

    def load_checkpoint(self, path: str | Path | None = None) -> int:
        """Restore model, optimisers, schedulers and RNG state; returns the step to continue at."""
        if path is None:
            ck = self.checkpoints()
            if not ck:
                return 0
            path = ck[-1]
        path = Path(path)
        if not (path / "trainer.json").is_file():
            raise FileNotFoundError(f"{path} is not a checkpoint written by this trainer (no trainer.json)")
        self.accelerator.load_state(str(path))
        self.step = int(json.loads((path / "trainer.json").read_text())["step"])
        return self.step

    # -- the loop --------------------------------------------------------------------------
    def run(self, steps: int | None = None) -> dict:
        from tqdm.auto import tqdm

        total = self.cfg.steps if steps is None else steps
        acc = self.accelerator
        log_path = self.out / "log.csv"
        new_log = not log_path.is_file() or self.step == 0
        logf = open(log_path, "w" if new_log else "a", newline="")
        writer = csv.writer(logf)
        if new_log:
            writer.writerow(["step", "phase", "loss", "lr", "sec_per_step", "wall_s"])
        bar = tqdm(total=total, initial=self.step, desc=self.out.name, disable=not (self.progress and
                   acc.is_local_main_process), unit="step", dynamic_ncols=True)
        self.stage.train()
        t_start = time.perf_counter()
        last = {}
        ema = None
        try:
            while self.step < total:
                t0 = time.perf_counter()
                batch = self.batch_fn(self.step)
                for phase in self.phases:
                    opt = self.opts[phase]
                    with acc.accumulate(self.stage):
                        loss = self.stage(batch, self.step, phase)
                        if not torch.isfinite(loss):
                            raise FloatingPointError(f"{phase} loss became {loss.item()} at step {self.step}")
                        acc.backward(loss)
                        if acc.sync_gradients and self.cfg.grad_clip > 0:
                            acc.clip_grad_norm_(self.params[phase], self.cfg.grad_clip)
                        opt.step()
                        self.scheds[phase].step()
                        opt.zero_grad(set_to_none=True)
                    last[phase] = float(loss.detach())
                self.step += 1
                dt = time.perf_counter() - t0
                main_loss = last[self.phases[0]]
                ema = main_loss if ema is None else 0.9 * ema + 0.1 * main_loss
                bar.update(1)
                bar.set_postfix({**{f"{k}": f"{v:.4f}" for k, v in last.items()}, "ema": f"{ema:.4f}",
                                 "s/it": f"{dt:.2f}"})
                if acc.is_main_process and (self.step % self.cfg.log_every == 0 or self.step == total):
                    for phase, v in last.items():
                        writer.writerow([self.step, phase, f"{v:.6f}",
                                         f"{self.scheds[phase].get_last_lr()[0]:.3e}", f"{dt:.4f}",
                                         f"{time.perf_counter() - t_start:.1f}"])
                    logf.flush()
                if self.cfg.checkpoint_every > 0 and (self.step % self.cfg.checkpoint_every == 0):
                    self.save_checkpoint()
        finally:
            bar.close()
            logf.close()
        if self.cfg.checkpoint_every > 0 and not any(p.name == f"step_{self.step}" for p in self.checkpoints()):
            self.save_checkpoint()
        wall = time.perf_counter() - t_start
        return {"steps": self.step, "loss": last, "ema": ema, "wall_s": wall}

    def unwrap(self) -> nn.Module:
        return self.accelerator.unwrap_model(self.stage)


def count_params(params) -> int:
    return int(sum(p.numel() for p in params))


def fmt_count(n: int) -> str:
    if n <= 0:
        return "0"
    e = int(math.floor(math.log10(n)))
    return f"{n / 10 ** e:.1f}e{e}"
