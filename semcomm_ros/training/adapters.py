"""Training of the three adapters on the frozen backbone (paper V-D2..4), on ``SynthModel``.

Stage   trains                      objective
------  --------------------------  ----------------------------------------------------------------
control  psi (ControlNet)           Eq. 3 with eps_{theta,psi}(x_t, Y, t), backbone frozen
restoration omega (W'K, W'V, W'O)   Eq. 3 with eps_{theta,omega}(x_t, x~_t, t); psi omitted (IV-B3)
teacher  phi (bidirectional, K)     Eq. 3 over clips of K frames, temporal attention bidirectional
lcm      phi^- (causal, W)          Eq. 5: student at the teacher's ODE point x^_t matches the teacher
dmd      phi^- and critic phi^fake  Eq. 6 for the student, alternating with Eq. 3 for the critic

All stages go through ``SynthModel.predict_noise`` -- the exact computation the streaming
synthesizer runs -- so the adapters are trained where they act. The temporal stages condition on
the label map and the degraded frame (psi and omega frozen at their default weights), because
that is how the Temporal Adapter is used at inference; the paper trains phi text-to-video instead.

The teacher/critic/student share one backbone: their Temporal Adapters are swapped in per call
with ``torch.func.functional_call``, so only one UNet is in memory and gradients reach exactly the
adapter being trained.
"""

from __future__ import annotations

import copy
import hashlib
import os
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from semcomm_ros.synth.adapters import OMEGA, PHI, PSI
from semcomm_ros.synth.temporal_adapter import TemporalAdapter

from .assembly import MODEL, TEACHER, load_model, save_part
from .config import Preset, StageConfig
from .data import BatchSampler, ClipSet, _key, flip_array
from .losses import batch_generator, object_weights, weighted_mse
from .pretrained import load_controlnet, load_motion_adapter, load_phi_weights
from .recorded import _fingerprint
from .sources import decoded_labels, load_clips
from .trainer import Plan, count_params


# -- latent caches ------------------------------------------------------------------------------
class EncodedClips:
    """VAE latents of frames (x_0) and of upsampled degraded frames (x~_0) for every flip."""

    def __init__(self, clean: torch.Tensor, degraded: torch.Tensor):
        self.clean, self.degraded = clean, degraded  # (N, F, 4, C, h, w)

    @classmethod
    @torch.no_grad()
    def build(cls, model, clips: ClipSet, cache_file: Path | None = None, progress: bool = True,
              batch: int = 64) -> "EncodedClips":
        if cache_file is not None and cache_file.is_file():
            d = torch.load(cache_file)
            return cls(d["clean"], d["degraded"])
        from tqdm.auto import tqdm

        n, f = clips.num_clips, clips.frames_per_clip
        res = clips.frames.shape[2]
        frames = clips.frames.reshape(n * f, *clips.frames.shape[2:])
        lows = clips.lowres.reshape(n * f, *clips.lowres.shape[2:])
        bar = tqdm(total=8 * n * f, desc="encode latents", disable=not progress)
        dev, home = work_device(), model.vae.device

        def enc(arr, flip, up):
            out = []
            for i in range(0, len(arr), batch):
                a = flip_array(arr[i:i + batch], flip, spatial_axes=(1, 2))
                x = torch.from_numpy(a).float().div(127.5).sub(1).permute(0, 3, 1, 2).to(dev)
                if up:  # as SynthModel.encode_degraded: bilinear to the output size, then E
                    x = F.interpolate(x, size=(res, res), mode="bilinear", align_corners=False)
                out.append(model.encode_images(x).cpu())
                bar.update(len(a))
            return torch.cat(out)

        model.vae.to(dev)  # an SD VAE at 512x512 is far too slow for this on a CPU
        try:
            clean = torch.stack([enc(frames, fl, False) for fl in range(4)], 1)
            deg = torch.stack([enc(lows, fl, True) for fl in range(4)], 1)
        finally:
            model.vae.to(home)
        bar.close()
        out = cls(clean.reshape(n, f, *clean.shape[1:]), deg.reshape(n, f, *deg.shape[1:]))
        if cache_file is not None:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
            torch.save({"clean": out.clean, "degraded": out.degraded}, tmp)
            os.replace(tmp, cache_file)  # atomic: parallel stages may read it
        return out

    def lookup(self, batch: dict, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx_f = torch.as_tensor(np.asarray(batch["start"])[:, None] + np.arange(frames))
        ci = torch.as_tensor(np.asarray(batch["clip"]))[:, None]
        fl = torch.as_tensor(np.asarray(batch["flip"]))[:, None]
        return self.clean[ci, idx_f, fl], self.degraded[ci, idx_f, fl]


def work_device() -> torch.device:
    """Where the work before training (latent cache, teacher samples) runs: this process's GPU if any."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def _cache_file(root: Path, preset: Preset, degradation: str) -> Path:
    """Keyed by the VAE's weights (their values, not the file: re-saving must not invalidate it)."""
    from safetensors.torch import load_file

    vae_file = next((root / MODEL / "vae").glob("*.safetensors"))
    h = hashlib.sha1()
    for k, v in sorted(load_file(str(vae_file)).items()):
        h.update(k.encode())
        h.update(v.float().numpy().tobytes())
    h.update(_key(preset.data, degradation).encode())
    if preset.data.source:  # recordings: their files, not only their path
        h.update(_fingerprint(Path(preset.data.source)).encode())
    return root / "cache" / f"latents_{h.hexdigest()[:12]}.pt"


def stage_data(model, preset: Preset, cfg: StageConfig, root: Path, progress: bool):
    clips = load_clips(preset.data, degradation=cfg.degradation, progress=progress)
    if cfg.decoded_labels:
        clips.decoded = decoded_labels(preset.data, progress=progress)
    enc = EncodedClips.build(model, clips, _cache_file(root, preset, cfg.degradation), progress=progress)
    return clips, enc


# -- stage modules ------------------------------------------------------------------------------
class _AdapterStage(nn.Module):
    """Common part: a SynthModel, its encoded clips, and Eq. 3 on a batch of clips."""

    stage_param = PSI.symbol

    def __init__(self, model, enc: EncodedClips | None, cfg: StageConfig):
        super().__init__()
        self.model, self.enc, self.cfg = model, enc, cfg
        self.trainable = model.freeze_all_but(self.stage_param)
        self._check_trainable(self.trainable)

    def _check_trainable(self, expected: list[nn.Parameter]) -> None:
        # the paper's contract: only the adapter of this stage learns; the backbone stays frozen
        ids = {id(p) for p in expected}
        got = [n for n, p in self.named_parameters() if p.requires_grad]
        bad = [n for n, p in self.named_parameters() if p.requires_grad and id(p) not in ids]
        assert not bad, f"parameters outside {self.stage_param} would be trained: {bad[:5]}"
        assert got, f"no trainable parameters in {self.stage_param}"

    def batch_tensors(self, batch: dict):
        dev = self.model.null_embedding.device
        k = np.asarray(batch["labels"]).shape[1]
        if "x0" in batch:
            x0, deg = batch["x0"], batch["deg0"]
        else:
            x0, deg = self.enc.lookup(batch, k)
        labels = torch.from_numpy(np.ascontiguousarray(batch["labels"])).long()
        return x0.to(dev), deg.to(dev), labels.to(dev)

    def noise(self, shape, generator, dev):
        return torch.randn(shape, generator=generator).to(dev)

    def weights(self, labels: torch.Tensor, x0: torch.Tensor) -> torch.Tensor | None:
        return object_weights(labels, tuple(x0.shape[-2:]), self.cfg.object_weight)

    def timesteps(self, b: int, generator, dev, lo: int = 0, hi: int | None = None):
        hi = hi or self.model.scheduler.config.num_train_timesteps
        return torch.randint(lo, hi, (b,), generator=generator).to(dev)


class ControlStage(_AdapterStage):
    """psi by Eq. 3: ||eps - eps_{theta,psi}(x_t, Y, t)||^2, trained at lambda_C of the config."""

    stage_param = PSI.symbol

    def forward(self, batch, step: int = 0, phase: str = "main", generator=None):
        generator = batch_generator(batch, generator)
        x0, _, labels = self.batch_tensors(batch)
        b = x0.shape[0]
        t = self.timesteps(b, generator, x0.device)
        eps = self.noise(x0.shape, generator, x0.device)
        pred = self.model.predict_noise(self.model.add_noise(x0, t, eps), t, labels=labels, temporal="off",
                                        lambda_c=self.cfg.lambda_c, lambda_r=0.0)
        return weighted_mse(pred, self.model.target(x0, eps, t), self.weights(labels, x0))


class RestorationStage(_AdapterStage):
    """omega by Eq. 3: ||eps - eps_{theta,omega}(x_t, x~_t, t)||^2 (psi omitted, as in IV-B3, unless
    the stage config says ``with_control``: then psi runs frozen at its lambda_c)."""

    stage_param = OMEGA.symbol

    def forward(self, batch, step: int = 0, phase: str = "main", generator=None):
        generator = batch_generator(batch, generator)
        x0, d0, labels = self.batch_tensors(batch)
        b = x0.shape[0]
        t = self.timesteps(b, generator, x0.device)
        eps = self.noise(x0.shape, generator, x0.device)
        deg = self.model.degraded_input(d0, t, self.noise(d0.shape, generator, x0.device))
        ctl = self.cfg.with_control
        pred = self.model.predict_noise(self.model.add_noise(x0, t, eps), t, labels=labels if ctl else None,
                                        degraded_latents=deg, temporal="off",
                                        lambda_c=self.cfg.lambda_c if ctl else 0.0, lambda_r=self.cfg.lambda_r)
        return weighted_mse(pred, self.model.target(x0, eps, t), self.weights(labels, x0))


class _Swap(nn.Module):
    """Calls ``model.predict_noise`` through forward, so functional_call can swap phi's weights."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, kwargs):
        return self.model.predict_noise(**kwargs)


def _phi_params(adapter) -> dict[str, torch.Tensor]:
    return {f"model.temporal.{n}": p for n, p in adapter.named_parameters()}


class TeacherStage(_AdapterStage):
    """phi with bidirectional temporal attention over K frames, Eq. 3 on clips (one t per clip)."""

    stage_param = PHI.symbol

    def conditioned(self, x_t, t, labels, d0, dnoise, temporal):
        deg = self.model.degraded_input(d0, t, dnoise)
        return dict(x_t=x_t, t=t, labels=labels, degraded_latents=deg, temporal=temporal)

    def forward(self, batch, step: int = 0, phase: str = "main", generator=None):
        generator = batch_generator(batch, generator)
        x0, d0, labels = self.batch_tensors(batch)
        b, dev = x0.shape[0], x0.device
        t = self.timesteps(b, generator, dev)
        eps = self.noise(x0.shape, generator, dev)
        kw = self.conditioned(self.model.add_noise(x0, t, eps), t, labels, d0,
                              self.noise(d0.shape, generator, dev), "bidirectional")
        return weighted_mse(self.model.predict_noise(**kw), self.model.target(x0, eps, t), self.weights(labels, x0))


class _DistillStage(TeacherStage):
    """Holds the frozen teacher phi (bidirectional) beside the model's own phi (the student)."""

    def __init__(self, model, enc, cfg, teacher_phi):
        super().__init__(model, enc, cfg)
        # kept out of the module tree: the model is already registered once, as self.model
        self.__dict__["swap"] = _Swap(model)
        self.teacher = teacher_phi.requires_grad_(False)
        model.config.window = cfg.window  # W of the causal student (Eq. 9 / sliding window)

    def eps_with(self, adapter, kwargs):
        return torch.func.functional_call(self.swap, _phi_params(adapter), (kwargs,), strict=False)


class LCMStage(_DistillStage):
    """Eq. 5 on teacher samples: the causal student at the teacher's ODE point matches the teacher.

    The teacher's ODE solver Psi (one DDIM jump from t+s to t) gives x^_t on the teacher's
    trajectory of a sample from the teacher; the student eps_{theta,phi^-}(x^_t, t) with causal
    window W is regressed onto the bidirectional teacher's eps_{theta,phi}(x^_t, t).
    """

    def __init__(self, model, enc, cfg, teacher_phi, samples: dict):
        super().__init__(model, enc, cfg, teacher_phi)
        self.samples = samples  # x0 [S, K, C, h, w], deg0, labels from the teacher (sample_teacher)

    def forward(self, batch, step: int = 0, phase: str = "main", generator=None):
        generator = batch_generator(batch, generator)
        s = self.samples
        idx = torch.as_tensor(batch["sample"])
        dev = self.model.null_embedding.device
        x0, d0, labels = s["x0"][idx].to(dev), s["deg0"][idx].to(dev), s["labels"][idx].to(dev)
        b = x0.shape[0]
        skip = self.cfg.skip
        t_hi = self.timesteps(b, generator, dev, lo=skip)
        t_lo = t_hi - skip
        eps = self.noise(x0.shape, generator, dev)
        dn = self.noise(d0.shape, generator, dev)
        x_hi = self.model.add_noise(x0, t_hi, eps)
        with torch.no_grad():
            e_hi = self.eps_with(self.teacher, self.conditioned(x_hi, t_hi, labels, d0, dn, "bidirectional"))
            x0_hat, eps_hat = self.model.split_output(x_hi, e_hi, t_hi)
            x_lo = self.model.add_noise(x0_hat, t_lo, eps_hat)  # DDIM: Psi(x_{t+s}, t+s, t)
            target = self.eps_with(self.teacher, self.conditioned(x_lo, t_lo, labels, d0, dn, "bidirectional"))
        pred = self.model.predict_noise(**self.conditioned(x_lo, t_lo, labels, d0, dn, "causal"))
        return F.mse_loss(pred, target)


class DMDStage(_DistillStage):
    """Eq. 6 (student, causal, T steps) alternating with Eq. 3 (critic, bidirectional).

    Student phase: generate x^ from noise with the student's T-step LCM sampler (gradient through
    the last step), noise it to t ~ U[t_min, t_max], and push x^ along s_real - s_fake, estimated
    by the teacher's and the critic's x_{t->0} (Eq. 4), normalised as in DMD. Critic phase: Eq. 3
    on the student's (detached) samples.
    """

    def __init__(self, model, enc, cfg, teacher_phi, critic_phi):
        super().__init__(model, enc, cfg, teacher_phi)
        self.critic = critic_phi.requires_grad_(True)
        student = list(model.temporal.parameters())
        for p in student:
            p.requires_grad_(True)
        self._check_trainable(student + list(self.critic.parameters()))
        self._fake = None

    def student_parameters(self):
        return list(self.model.temporal.parameters())

    def critic_parameters(self):
        return list(self.critic.parameters())

    def generate(self, shape, labels, d0, generator, dev):
        steps = self.model.timesteps(self.cfg.student_steps)
        x = self.noise(shape, generator, dev)
        b = shape[0]
        for i, t in enumerate(steps):
            tt = torch.full((b,), int(t), device=dev, dtype=torch.long)
            last = i == len(steps) - 1
            with torch.set_grad_enabled(last and torch.is_grad_enabled()):
                eps = self.model.predict_noise(
                    **self.conditioned(x, tt, labels, d0, self.noise(d0.shape, generator, dev), "causal"))
                x = self.model.lcm_step(i, steps, x, eps, self.noise(shape, generator, dev))
        return x

    def forward(self, batch, step: int = 0, phase: str = "student", generator=None):
        generator = batch_generator(batch, generator)
        x0, d0, labels = self.batch_tensors(batch)
        b, dev = x0.shape[0], x0.device
        if phase == "student":
            fake = self.generate(x0.shape, labels, d0, generator, dev)
            self._fake = fake.detach()
            t = self.timesteps(b, generator, dev, lo=self.cfg.t_min, hi=self.cfg.t_max)
            eps = self.noise(fake.shape, generator, dev)
            dn = self.noise(d0.shape, generator, dev)
            with torch.no_grad():
                x_t = self.model.add_noise(fake.detach(), t, eps)
                kw = self.conditioned(x_t, t, labels, d0, dn, "bidirectional")
                real_x0 = self.model.split_output(x_t, self.eps_with(self.teacher, kw), t)[0]
                fake_x0 = self.model.split_output(x_t, self.eps_with(self.critic, kw), t)[0]
                w = (fake.detach() - real_x0).abs().mean(dim=(1, 2, 3, 4), keepdim=True).clamp_min(1e-4)
                grad = (fake_x0 - real_x0) / w  # -(s_real - s_fake), normalised (DMD)
                target = fake.detach() - grad
            return 0.5 * F.mse_loss(fake, target)
        if phase == "critic":
            fake = (self._fake if self._fake is not None
                    else self.generate(x0.shape, labels, d0, generator, dev).detach())
            t = self.timesteps(b, generator, dev)
            eps = self.noise(fake.shape, generator, dev)
            kw = self.conditioned(self.model.add_noise(fake, t, eps), t, labels, d0,
                                  self.noise(d0.shape, generator, dev), "bidirectional")
            return F.mse_loss(self.eps_with(self.critic, kw), self.model.target(fake, eps, t))
        raise ValueError(f"DMD has phases 'student' and 'critic', got {phase!r}")


# -- teacher sampling (LCM data) ---------------------------------------------------------------
@torch.no_grad()
def sample_teacher(model, teacher_phi, enc: EncodedClips, clips: ClipSet, cfg: StageConfig,
                   progress: bool = True) -> dict:
    """``cfg.teacher_samples`` clips of K frames sampled by the bidirectional teacher (DDIM)."""
    from tqdm.auto import tqdm

    stage = _DistillStage(model, enc, cfg, teacher_phi)
    sampler = BatchSampler(clips, 1, frames=cfg.frames, seed=cfg.seed + 7, decoded_share=cfg.decoded_labels)
    dev = model.null_embedding.device
    n_t = model.scheduler.config.num_train_timesteps
    ts = np.linspace(n_t - 1, 0, cfg.teacher_steps).round().astype(int)
    gen = torch.Generator().manual_seed(cfg.seed + 11)
    out = {"x0": [], "deg0": [], "labels": []}
    for i in tqdm(range(cfg.teacher_samples), desc="teacher samples", disable=not progress):
        batch = sampler.batch(i)
        _, d0, labels = stage.batch_tensors(batch)
        x = torch.randn((1, cfg.frames, *enc.clean.shape[-3:]), generator=gen).to(dev)
        dn = torch.randn(d0.shape, generator=gen).to(dev)
        for j, t in enumerate(ts):
            tt = torch.full((1,), int(t), device=dev, dtype=torch.long)
            eps = stage.eps_with(teacher_phi, stage.conditioned(x, tt, labels, d0, dn, "bidirectional"))
            x0, eps = model.split_output(x, eps, tt)
            if j == len(ts) - 1:
                x = x0
            else:
                x = model.add_noise(x0, torch.full((1,), int(ts[j + 1]), device=dev, dtype=torch.long), eps)
        out["x0"].append(x.cpu())
        out["deg0"].append(d0.cpu())
        out["labels"].append(labels.cpu())
    return {k: torch.cat(v) for k, v in out.items()}


# -- stage plans (run by pipeline.run_stage) --------------------------------------------------
def _finish(root: Path, symbol: str, also=None):
    """After training: save the adapter into the model directory and count parameters."""

    def finish(st) -> dict:
        m = st.model
        if also is not None:
            also(m)
        save_part(m, symbol, root)
        counts = m.parameter_counts()
        return {"trainable_params": count_params(m.trainable_parameters(symbol)), "model_params": counts["total"],
                "param_counts": counts}

    return finish


def _clip_plan(stage_cls, preset: Preset, cfg: StageConfig, root: Path, resume: bool, progress: bool,
               also=None, model=None) -> Plan:
    model = model if model is not None else load_model(preset, root)
    clips, enc = stage_data(model, preset, cfg, root, progress)
    sampler = BatchSampler(clips, cfg.batch_size, frames=cfg.frames, seed=cfg.seed, decoded_share=cfg.decoded_labels)
    return Plan(stage_cls(model, enc, cfg), sampler.batch, _finish(root, stage_cls.stage_param, also))


def plan_control(preset: Preset, cfg: StageConfig, root: Path, resume: bool, progress: bool) -> Plan:
    model = load_model(preset, root)
    if preset.pretrained.controlnet:
        # psi starts from the given ControlNet whatever the backbone (a trained run's model directory
        # was assembled with a fresh psi); --resume then goes on from the stage's own checkpoint
        init = load_controlnet(preset.pretrained.controlnet, model.unet, model.config.num_classes, preset.data)
        model.controlnet.load_state_dict(init.state_dict())
    return _clip_plan(ControlStage, preset, cfg, root, resume, progress, model=model)


plan_restoration = partial(_clip_plan, RestorationStage)


def plan_teacher(preset: Preset, cfg: StageConfig, root: Path, resume: bool, progress: bool) -> Plan:
    model = load_model(preset, root)
    if preset.pretrained.motion_adapter:  # fine-tune AnimateDiff's motion module (the paper's teacher)
        load_phi_weights(model, load_motion_adapter(preset.pretrained.motion_adapter, model.unet),
                         preset.pretrained.motion_adapter)
    # kept apart from the model's phi: lcm/dmd read it as the frozen teacher
    return _clip_plan(TeacherStage, preset, cfg, root, resume, progress, model=model,
                      also=lambda m: m.save_module(PHI.symbol, root / TEACHER))


def load_teacher(preset: Preset, root: Path, unet):
    """The frozen teacher phi: the teacher stage's, else the pretrained motion adapter."""
    from diffusers import MotionAdapter

    if (root / TEACHER).is_dir():
        return TemporalAdapter(MotionAdapter.from_pretrained(root / TEACHER, local_files_only=True))
    if preset.pretrained.motion_adapter:
        return TemporalAdapter(load_motion_adapter(preset.pretrained.motion_adapter, unet))
    raise FileNotFoundError(f"no teacher Temporal Adapter under {root / TEACHER}; run `semcomm train teacher` first "
                            "(or pass --motion-adapter, an AnimateDiff motion module)")


def plan_lcm(preset: Preset, cfg: StageConfig, root: Path, resume: bool, progress: bool) -> Plan:
    model = load_model(preset, root)
    teacher = load_teacher(preset, root, model.unet)
    load_phi_weights(model, teacher.motion, "the teacher")  # the student starts as the teacher
    clips, enc = stage_data(model, preset, cfg, root, progress)
    samples_file = root / "cache" / "teacher_samples.pt"
    if resume and samples_file.is_file():
        samples = torch.load(samples_file)
    else:
        model.to(work_device())
        teacher.to(work_device())
        samples = sample_teacher(model, teacher, enc, clips, cfg, progress)
        samples_file.parent.mkdir(parents=True, exist_ok=True)
        torch.save(samples, samples_file)
    n = samples["x0"].shape[0]

    def batch_fn(step):
        rng = np.random.default_rng([cfg.seed, step])
        return {"sample": rng.integers(0, n, cfg.batch_size)}

    return Plan(LCMStage(model, enc, cfg, teacher, samples), batch_fn, _finish(root, PHI.symbol),
                info={"teacher_samples": n})


def plan_dmd(preset: Preset, cfg: StageConfig, root: Path, resume: bool, progress: bool) -> Plan:
    model = load_model(preset, root)
    teacher = load_teacher(preset, root, model.unet)
    critic = copy.deepcopy(teacher)  # the critic starts as the teacher (bidirectional)
    clips, enc = stage_data(model, preset, cfg, root, progress)
    st = DMDStage(model, enc, cfg, teacher, critic)
    sampler = BatchSampler(clips, cfg.batch_size, frames=cfg.frames, seed=cfg.seed, decoded_share=cfg.decoded_labels)
    return Plan(st, sampler.batch, _finish(root, PHI.symbol),
                phases={"student": st.student_parameters(), "critic": st.critic_parameters()},
                phase_lr={"critic": cfg.critic_lr or cfg.lr},
                info={"critic_params": count_params(st.critic_parameters())})
