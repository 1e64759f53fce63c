"""Stage ``refiner``: the Semantic Refiner rho (synth/refiner.py, ours) on the finished synthesizer.

rho must learn what the operator really hands it, so its data come from the whole chain, as
``semcomm eval`` runs it: the training scenes rendered at the camera's size, segmented by the
robot's segmenter, both streams coded and sent over the simulated 2 kbps link, decoded, and
synthesized causally by the model assembled so far (psi, omega and the phi student). Each sample
is (the denoiser's final latent x_0, the decoded label map and the received low-res frame at the
model's size, the clean frame at the model's size). A fifth of the samples use the clean frame's
own latent E(I) instead of x_0 and a tenth have no low-res frame, so that rho neither trusts the
latent blindly nor depends on a frame that a lossy link may not deliver.

Loss: L1 to the clean frame, object pixels weighted (``object_weight``, as the diffusion stages),
plus L1 on horizontal and vertical image gradients (what makes an edge crisp).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from semcomm_ros.receiver import model_inputs
from semcomm_ros.synth import CausalSynthesizer
from semcomm_ros.synth.config import SynthConfig
from semcomm_ros.system import transmit

from .assembly import MODEL, load_model
from .config import Preset, StageConfig
from .sources import chain_config, chain_inputs
from .trainer import Plan, count_params

#: share of samples that start from E(I) instead of the denoiser's x_0 / that have no low-res frame
P_CLEAN_LATENT = 0.2
P_NO_LOWRES = 0.1
GRADIENT_WEIGHT = 0.5


def chain_samples(model, preset: Preset, progress: bool = True) -> dict[str, np.ndarray]:
    """Run the whole chain on the training clips; returns the arrays the stage trains on."""
    from tqdm.auto import tqdm

    synth = CausalSynthesizer(model, device="cpu", dtype=torch.float32)
    h, w = synth.output_size
    out = {k: [] for k in ("z", "zc", "labels", "lowres", "clean", "objects")}
    total = preset.data.clips
    bar = tqdm(total=total, desc="refiner data (whole chain)", disable=not progress)
    for i, (frames, segment) in enumerate(chain_inputs(preset.data, progress)):
        robot_labels: dict[int, np.ndarray] = {}

        def robot(frame, segment=segment):
            # kept for the object weights: segmenting each frame once is the stage's main cost;
            # transmit calls it within this iteration, so this iteration's robot_labels is the one (B023)
            robot_labels[id(frame)] = out = segment(frame)  # noqa: B023
            return out

        rx = transmit(frames, robot, chain_config(preset.data, i))
        synth.reset()
        for k, frame in enumerate(frames):
            labels, low = model_inputs(rx.labels[k], rx.lowres[k], synth.output_size, synth.lowres_size)
            z = synth(labels, low, seed=preset.data.first_seed + i + k, output="latent")
            clean = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
            with torch.inference_mode():
                x = torch.from_numpy(clean).permute(2, 0, 1)[None].float() / 127.5 - 1
                zc = model.encode_images(x)[0]
            objects = cv2.resize((robot_labels[id(frame)] > 0).astype(np.float32), (w, h),
                                 interpolation=cv2.INTER_AREA)
            for key, value in (("z", z.float().numpy()), ("zc", zc.float().numpy()), ("labels", labels),
                               ("lowres", low), ("clean", clean), ("objects", objects)):
                out[key].append(value)
        bar.update(1)
    bar.close()
    return {k: np.stack(v) for k, v in out.items()}


class RefinerStage(nn.Module):
    def __init__(self, model, data: dict[str, np.ndarray], cfg: StageConfig):
        super().__init__()
        # deferred: synth.refiner imports diffusers (~2 s) and only this stage builds a refiner
        from semcomm_ros.synth.refiner import SemanticRefiner

        self.model = model
        self.cfg = cfg
        k = model.config.num_classes
        if model.refiner is None:
            model.refiner = SemanticRefiner(num_classes=k)
        model.refiner.train().requires_grad_(True)
        with torch.inference_mode():
            decode = lambda z: torch.cat([model.decode_latents(torch.from_numpy(z[i:i + 64])).clamp(-1, 1)  # noqa: E731
                                          for i in range(0, len(z), 64)])
            self.register_buffer("decoded", decode(data["z"]).clone(), persistent=False)
            self.register_buffer("decoded_clean", decode(data["zc"]).clone(), persistent=False)
        self.register_buffer("labels", torch.from_numpy(data["labels"]).long(), persistent=False)
        self.register_buffer("lowres", torch.from_numpy(data["lowres"]).permute(0, 3, 1, 2).float() / 127.5 - 1,
                             persistent=False)
        self.register_buffer("clean", torch.from_numpy(data["clean"]).permute(0, 3, 1, 2).float() / 127.5 - 1,
                             persistent=False)
        self.register_buffer("objects", torch.from_numpy(data["objects"])[:, None].float(), persistent=False)

    @property
    def refiner(self):
        # a property, not a second registration: checkpoints would hold rho's tensors twice
        return self.model.refiner

    def forward(self, batch, step, phase):
        idx = batch["index"]
        src = torch.where(batch["clean_latent"][:, None, None, None], self.decoded_clean[idx], self.decoded[idx])
        cond = F.one_hot(self.labels[idx], self.model.config.num_classes).permute(0, 3, 1, 2).float()
        low = self.lowres[idx] * batch["has_lowres"][:, None, None, None].float()
        tgt, obj = self.clean[idx], self.objects[idx]
        if batch["flip"]:  # top-down scenes: a mirrored frame is as valid as the frame
            src, cond, low, tgt, obj = (t.flip(-1) for t in (src, cond, low, tgt, obj))
        pred = self.refiner(src, cond, low)
        weight = 1 + self.cfg.object_weight * obj
        loss = (weight * (pred - tgt).abs()).mean() / weight.mean()
        for dim in (-1, -2):
            loss = loss + GRADIENT_WEIGHT * (pred.diff(dim=dim) - tgt.diff(dim=dim)).abs().mean()
        return loss


def _data_file(root: Path, preset: Preset) -> Path:
    key = hashlib.sha1(json.dumps(preset.to_dict()["data"], sort_keys=True).encode()).hexdigest()[:12]
    return root / "cache" / f"refiner_chain_{key}.npz"


def plan_refiner(preset: Preset, cfg: StageConfig, root: Path, resume: bool, progress: bool) -> Plan:
    model = load_model(preset, root)
    path = _data_file(root, preset)
    # the chain's samples depend on the model: reuse them only when continuing this stage
    if resume and path.is_file():
        with np.load(path) as z:
            data = {k: z[k] for k in z.files}
    else:
        data = chain_samples(model, preset, progress)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **data)
    st = RefinerStage(model, data, cfg)
    n = len(data["z"])

    def batch_fn(step):
        rng = np.random.default_rng([cfg.seed, step])
        return {"index": torch.from_numpy(rng.integers(0, n, cfg.batch_size)),
                "clean_latent": torch.from_numpy(rng.random(cfg.batch_size) < P_CLEAN_LATENT),
                "has_lowres": torch.from_numpy(rng.random(cfg.batch_size) >= P_NO_LOWRES),
                "flip": bool(rng.random() < 0.5)}

    def finish(stage) -> dict:
        out = root / MODEL
        refiner = stage.refiner.eval().requires_grad_(False)
        refiner.save_pretrained(out / "refiner", safe_serialization=True)
        config = SynthConfig.load(out)
        config.parts["refiner"] = "refiner"
        config.save(out)
        return {"trainable_params": count_params(refiner.parameters())}

    return Plan(st, batch_fn, finish, phases={"main": list(st.refiner.parameters())},
                info={"chain_samples": n})
