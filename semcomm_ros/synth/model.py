"""SynthModel: the modular video diffusion model epsilon_{theta, omega, psi, phi^-} (paper IV-B).

Holds the frozen backbone (UNet + VAE + null embedding + LCM scheduler) and the three adapters:
Semantic Control psi (ControlNet), Restoration Adapter omega (Eq. 7 processors) and Temporal
Adapter phi (MotionAdapter, Eq. 8/9). ``predict_noise`` is the full masked clip computation that
training uses; ``CausalSynthesizer`` (synthesizer.py) streams it frame by frame with a KV cache.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import backbone as bb
from .adapters import ADAPTERS, OMEGA, PHI, PSI, adapter
from .backbone import PREDICTION_TYPES  # noqa: F401  (re-exported: the model's users look here)
from .config import CONFIG_NAME, TEMPORAL_MODES, SynthConfig, default_parts
from .restoration_adapter import RestorationAdapter
from .runstate import RunState, TemporalRun
from .semantic_control import build_controlnet, check_labels, controlnet_residuals, one_hot
from .temporal_adapter import TemporalAdapter

#: where ``from_pretrained()`` without a path looks for the shipped model
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"


class SynthModel(nn.Module):
    """epsilon_{theta, omega, psi, phi}: frozen backbone + Semantic Control + Restoration + Temporal."""

    def __init__(self, config: SynthConfig, unet, vae, scheduler=None, controlnet=None,
                 restoration: RestorationAdapter | None = None, temporal: TemporalAdapter | None = None,
                 null_embedding: torch.Tensor | None = None, refiner=None):
        super().__init__()
        self.config = config
        self.refiner = refiner
        self.unet = unet
        self.vae = vae
        self.controlnet = controlnet
        self.restoration = restoration
        self.temporal = temporal
        self.scheduler = scheduler if scheduler is not None else bb.lcm_scheduler()
        cross = unet.config.cross_attention_dim
        if null_embedding is None:
            null_embedding = bb.zero_null_embedding(config.null_tokens, cross)
        if null_embedding.ndim != 3 or null_embedding.shape[0] != 1 or null_embedding.shape[2] != cross:
            raise ValueError(f"null embedding must be [1, tokens, {cross}], got {tuple(null_embedding.shape)}")
        self.register_buffer("null_embedding", null_embedding.clone(), persistent=False)
        if null_embedding.shape[1] == 1:
            bb.use_one_token_cross_attention(unet, controlnet)
        self._check_shapes()
        self._state = RunState()
        if restoration is not None:
            restoration.attach(unet, self._state)
        self._hooks = temporal.attach(unet, self._state) if temporal is not None else []
        if restoration is not None:
            self._hooks += self._skip_degraded_tail()
        bb.freeze(unet)
        bb.freeze(vae)
        if refiner is not None and refiner.config.num_classes != config.num_classes:
            raise ValueError(f"the Semantic Refiner takes {refiner.config.num_classes} classes, the config "
                             f"{config.num_classes}")
        self._timesteps: dict[int, list[int]] = {}

    def _skip_degraded_tail(self) -> list:
        """Drop the degraded rows before the up blocks that follow the last self-attention.

        Eq. 7 only reads the degraded features z~ at self-attention layers, so the backbone's
        trailing attention-free up blocks and output convolutions would compute nothing that is
        used for those rows (about a quarter of a typical UNet's work).
        """
        ups = list(self.unet.up_blocks)
        with_attn = [i for i, b in enumerate(ups) if getattr(b, "attentions", None) is not None and len(b.attentions)]
        if not with_attn:
            return []
        state = self._state

        def pre(module, args, kwargs):
            if not state.degraded:
                return None
            n = state.n_main
            kwargs = dict(kwargs)
            kwargs["hidden_states"] = kwargs["hidden_states"][:n]
            if kwargs.get("temb") is not None:
                kwargs["temb"] = kwargs["temb"][:n]
            kwargs["res_hidden_states_tuple"] = tuple(r[:n] for r in kwargs["res_hidden_states_tuple"])
            return args, kwargs

        return [b.register_forward_pre_hook(pre, with_kwargs=True) for b in ups[with_attn[-1] + 1:]]

    def _check_shapes(self) -> None:
        ucfg, p = self.unet.config, self.config.latent_patch
        lat = getattr(self.vae.config, "latent_channels", None)
        if lat is not None and lat * p * p != ucfg.in_channels:
            raise ValueError(f"VAE latent channels {lat} x latent patch {p}x{p} != UNet in_channels "
                             f"{ucfg.in_channels}")
        if bb.vae_factor(self.vae) != self.config.vae_factor:
            raise ValueError(f"the VAE downsamples by {bb.vae_factor(self.vae)} but the config says vae_factor "
                             f"{self.config.vae_factor}")
        if self.temporal is not None and self.config.window > self.temporal.max_frames:
            raise ValueError(f"window W={self.config.window} exceeds the Temporal Adapter's "
                             f"{self.temporal.max_frames} positions (motion_max_seq_length)")
        if self.controlnet is not None:
            cc = self.controlnet.config.conditioning_channels
            if cc != self.config.num_classes:
                raise ValueError(f"ControlNet takes {cc} condition channels but the config has "
                                 f"{self.config.num_classes} classes (one-hot label maps)")

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def from_components(cls, unet, vae, config: SynthConfig | None = None, scheduler=None,
                        controlnet="new", restoration="new", temporal="new", null_embedding=None,
                        adapter_init: str = "backbone", motion_heads: int | None = None,
                        motion_max_seq_length: int = 32, controlnet_embedding_channels=None) -> "SynthModel":
        """Assemble a model from trained backbone parts.

        ``controlnet``/``restoration``/``temporal``: a module, "new" (fresh adapter built for this
        backbone: ControlNet cloned from the UNet encoder with zero convolutions, omega with
        W'^K, W'^V copied from the backbone and W'^O zero, phi a fresh MotionAdapter), or None
        (the model has no such part). ``scheduler`` may be the backbone's training scheduler
        (its beta schedule is kept) or an LCMScheduler.
        """
        config = config or SynthConfig()
        if config.vae_class != type(vae).__name__ and type(vae).__name__ in ("AutoencoderKL", "AutoencoderTiny"):
            config = config.replace(vae_class=type(vae).__name__)
        if config.vae_factor != bb.vae_factor(vae):
            config = config.replace(vae_factor=bb.vae_factor(vae))
        if controlnet == "new":
            controlnet = build_controlnet(unet, config.num_classes, controlnet_embedding_channels)
        if restoration == "new":
            restoration = RestorationAdapter.from_unet(unet, init=adapter_init)
        if temporal == "new":
            temporal = TemporalAdapter.from_unet(unet, num_attention_heads=motion_heads,
                                                 max_seq_length=motion_max_seq_length)
        if scheduler is not None and type(scheduler).__name__ != "LCMScheduler":
            scheduler = bb.lcm_scheduler(scheduler)
        parts = dict(config.parts)
        for a, module in zip(ADAPTERS, (controlnet, restoration, temporal)):
            parts[a.part] = (parts[a.part] or default_parts()[a.part]) if module is not None else None
        config = config.replace(parts=parts)
        return cls(config, unet, vae, scheduler=scheduler, controlnet=controlnet, restoration=restoration,
                   temporal=temporal, null_embedding=null_embedding)

    @classmethod
    def from_sd_checkpoint(cls, path: str | Path, config: SynthConfig | None = None,
                           null_embedding: torch.Tensor | None = None, **kwargs) -> "SynthModel":
        """Backbone from a LOCAL Stable-Diffusion-1.5-family directory (diffusers layout), new adapters.

        Reads ``unet/``, ``vae/`` (AutoencoderKL) and ``scheduler/``; never a hub. The empty prompt's
        embedding is computed once with the checkpoint's ``text_encoder/`` and ``tokenizer/`` when
        the ``transformers`` package is installed, else it must be passed as ``null_embedding``.
        Further keyword arguments go to ``from_components``.
        """
        unet, vae, scheduler, null_embedding = bb.load_sd_backbone(path, null_embedding)
        scheduler = bb.lcm_scheduler(scheduler)
        config = (config or SynthConfig()).replace(vae_class="AutoencoderKL", null_tokens=int(null_embedding.shape[1]))
        return cls.from_components(unet, vae, config, scheduler=scheduler, null_embedding=null_embedding, **kwargs)

    # -- the scheduler -----------------------------------------------------------------------------
    def timesteps(self, num_steps: int | None = None) -> list[int]:
        """The T LCM timesteps (descending), e.g. [999, 759, 499, 259] for T=4."""
        steps = int(num_steps or self.config.num_steps)
        if steps not in self._timesteps:
            sched = copy.deepcopy(self.scheduler)
            sched.set_timesteps(steps)
            self._timesteps[steps] = [int(t) for t in sched.timesteps]
        return self._timesteps[steps]

    def alpha_bar(self, t: int) -> float:
        return float(self.scheduler.alphas_cumprod[int(t)])

    def lcm_step(self, step_index: int, timesteps: list[int], x: torch.Tensor, eps: torch.Tensor,
                 noise: torch.Tensor | None) -> torch.Tensor:
        """One LCM multistep update (as diffusers' LCMScheduler.step) with caller-given noise.

        The noise is an argument so that every frame draws its own seeded noise, identically in
        streaming and in the full-clip computation.
        """
        t = timesteps[step_index]
        c_skip, c_out = self.scheduler.get_scalings_for_boundary_condition_discrete(t)
        x0, _ = self.split_output(x, eps, t)
        denoised = float(c_out) * x0 + float(c_skip) * x
        if step_index == len(timesteps) - 1:
            return denoised
        a_prev = self.alpha_bar(timesteps[step_index + 1])
        return a_prev ** 0.5 * denoised + (1 - a_prev) ** 0.5 * noise

    def degraded_input(self, degraded_latents: torch.Tensor, t, noise: torch.Tensor | None = None) -> torch.Tensor:
        """x~ as the backbone sees it at timestep t: q(x~_t | x~_0) for degraded_noise="forward"."""
        if self.config.degraded_noise == "none":
            return degraded_latents
        if noise is None:
            raise ValueError("degraded_noise='forward' needs the noise for the degraded latent")
        return self.add_noise(degraded_latents, t, noise)

    @property
    def prediction_type(self) -> str:
        return bb.prediction_type(self.scheduler)

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t) -> torch.Tensor:
        """Eq. 3's regression target (backbone.diffusion_target) on this model's noise schedule."""
        return bb.diffusion_target(self.scheduler, x0, noise, t)

    def split_output(self, x_t: torch.Tensor, out: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
        """The UNet output at x_t -> (x0, noise) estimates (Eq. 4 for "epsilon"), whatever it predicts."""
        return bb.split_output(self.scheduler, x_t, out, t)

    def add_noise(self, x0: torch.Tensor, t, noise: torch.Tensor) -> torch.Tensor:
        """Eq. 1, q(x_t | x_0). ``t`` is an int or a tensor over the leading dimensions of ``x0``
        (one timestep per sample or per frame)."""
        return bb.add_noise(self.scheduler, x0, t, noise)

    # -- VAE ----------------------------------------------------------------------------------------
    def encode_images(self, images: torch.Tensor, sample: bool = False, generator=None) -> torch.Tensor:
        """[..., 3, H, W] in [-1, 1] -> scaled latents in the UNet's layout (x_0 = E(I)): [..., C p^2,
        H/(f p), W/(f p)], f the VAE's factor, p the latent patch."""
        lead = images.shape[:-3]
        z = bb.encode_images(self.vae, images.reshape(-1, *images.shape[-3:]), sample, generator,
                             self.config.latent_patch)
        return z.reshape(*lead, *z.shape[1:]).to(self.unet.dtype)

    def degraded_frames(self, lowres: torch.Tensor) -> torch.Tensor:
        """Degraded frames, uint8 [F, h, w, 3] -> [F, 3, h, w] in [-1, 1], fp32."""
        return lowres.permute(0, 3, 1, 2).to(torch.float32) / 127.5 - 1

    def encode_degraded(self, lowres: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Degraded frames uint8 [F, h, w, 3] -> (x~ = E(frame upsampled to the output size), the
        frames in [-1, 1] for rho), in the model's dtype. The backbone's features only exist at the
        latent size of full frames, hence the bilinear upsampling before the VAE encoder."""
        small = self.degraded_frames(lowres)
        x = F.interpolate(small, size=(self.config.height, self.config.width), mode="bilinear",
                          align_corners=False)
        dtype = self.unet.dtype
        return self.encode_images(x.to(dtype)), small.to(dtype)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents in the UNet's layout [..., C p^2, h, w] -> images [..., 3, f p h, f p w] in [-1, 1]
        (not clamped)."""
        lead = latents.shape[:-3]
        x = bb.decode_latents(self.vae, latents.reshape(-1, *latents.shape[-3:]), self.config.latent_patch)
        return x.reshape(*lead, *x.shape[1:])

    def render(self, latents: torch.Tensor, condition: torch.Tensor | None = None,
               degraded: torch.Tensor | None = None, lambda_rho: float | None = None) -> torch.Tensor:
        """x_0 -> the output frames [..., 3, H, W] in [-1, 1]: D(x_0), refined by rho when the model has one.

        condition: one-hot label maps [..., K, H, W]; degraded: the degraded frames [..., 3, h, w] in
        [-1, 1] (zeros where none was received). Without both, or with lambda_rho 0, D(x_0) as is.
        """
        images = self.decode_latents(latents)
        weight = self.config.lambda_rho if lambda_rho is None else lambda_rho
        # a 0-d tensor stays an input of an exported graph (lambda_rho is live)
        weight = weight if isinstance(weight, torch.Tensor) else float(weight)
        if self.refiner is None or condition is None or (not isinstance(weight, torch.Tensor) and weight == 0):
            return images
        lead = images.shape[:-3]
        flat = images.reshape(-1, *images.shape[-3:])
        cond = condition.reshape(-1, *condition.shape[-3:])
        if degraded is None:
            h, w = self.config.lowres_size
            deg = flat.new_zeros(flat.shape[0], 3, h, w)
        else:
            deg = degraded.reshape(-1, *degraded.shape[-3:])
        refined = self.refiner(flat.clamp(-1, 1), cond, deg)
        out = flat + weight * (refined - flat)
        return out.reshape(*lead, *out.shape[1:])

    def labels_to_condition(self, labels) -> torch.Tensor:
        """Label maps [..., H, W] (ids < num_classes) -> one-hot ControlNet condition [..., K, H, W]."""
        labels = check_labels(labels, self.config.num_classes, (self.config.height, self.config.width))
        return one_hot(labels.to(self.null_embedding.device), self.config.num_classes, self.unet.dtype)

    # -- the denoiser -------------------------------------------------------------------------------
    def _lambdas(self, lambda_c, lambda_r, lambda_t) -> tuple[float, float, float]:
        c = self.config
        return (float(c.lambda_c if lambda_c is None else lambda_c),
                float(c.lambda_r if lambda_r is None else lambda_r),
                float(c.lambda_t if lambda_t is None else lambda_t))

    def _temporal_mode(self, temporal: str | None) -> str:
        temporal = temporal or "causal"
        if temporal not in TEMPORAL_MODES:
            raise ValueError(f"temporal must be one of {TEMPORAL_MODES}, got {temporal!r}")
        return self.config.causal if temporal == "causal" else temporal

    def denoise_rows(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None,
                     degraded: torch.Tensor | None, lambda_c: float, lambda_r: float,
                     temporal: TemporalRun | None, cond_is_embedding: bool = False) -> torch.Tensor:
        """One UNet evaluation on rows [N, C, h, w] (clip-major frames), returns eps [N, C, h, w].

        ``degraded`` is x~ at timestep t (see degraded_input). One batched UNet call computes the
        main rows and the degraded rows; ControlNet residuals and temporal attention act on the
        main rows only.
        """
        n = x.shape[0]
        emb = self.null_embedding.to(dtype=x.dtype)
        down = mid = None
        if self.controlnet is not None and cond is not None and lambda_c != 0:
            down, mid = controlnet_residuals(self.controlnet, x, t, emb.expand(n, -1, -1), cond, lambda_c,
                                             cond_is_embedding)
        use_deg = self.restoration is not None and degraded is not None and lambda_r != 0
        sample, tt = x, t
        if use_deg:
            sample, tt = torch.cat([x, degraded.to(x.dtype)]), torch.cat([t, t])
            if down is not None:
                down = [torch.cat([d, torch.zeros_like(d)]) for d in down]
                mid = torch.cat([mid, torch.zeros_like(mid)])
        if temporal is not None and (self.temporal is None or temporal.lambda_t == 0):
            temporal = None
        st = self._state
        st.n_main, st.degraded, st.lambda_r, st.temporal = n, use_deg, lambda_r, temporal
        try:
            out = self.unet(sample, tt, encoder_hidden_states=emb.expand(sample.shape[0], -1, -1),
                            down_block_additional_residuals=down, mid_block_additional_residual=mid,
                            return_dict=False)[0]
        finally:
            st.clear()
        return out[:n]

    def predict_noise(self, x_t: torch.Tensor, t, labels=None, degraded_latents: torch.Tensor | None = None,
                      temporal: str | None = "causal", lambda_c: float | None = None,
                      lambda_r: float | None = None, lambda_t: float | None = None) -> torch.Tensor:
        """eps_{theta,omega,psi,phi}(x_t^{1:F}, x~^{1:F}, Y^{1:F}, t) for B clips of F frames.

        x_t: [B, F, C, h, w]; t: int, [B] or [B, F]; labels: [B, F, H, W] class ids or None
        (no Semantic Control); degraded_latents: [B, F, C, h, w] = x~ as the backbone sees it
        (apply ``degraded_input`` first when the config says degraded_noise="forward") or None;
        temporal: "causal" (the config's mode), "sliding", "block", "bidirectional" or "off".
        Lambdas default to the config's. Returns eps [B, F, C, h, w].
        """
        if x_t.ndim != 5:
            raise ValueError(f"x_t must be [B, F, C, h, w], got shape {tuple(x_t.shape)}")
        b, f, c, h, w = x_t.shape
        exp = (self.unet.config.in_channels, self.config.latent_height, self.config.latent_width)
        if (c, h, w) != exp:
            raise ValueError(f"x_t frames are {c}x{h}x{w} but the model expects latents {exp[0]}x{exp[1]}x{exp[2]}")
        lc, lr, lt = self._lambdas(lambda_c, lambda_r, lambda_t)
        mode = self._temporal_mode(temporal)
        tt = torch.as_tensor(t, device=x_t.device).long()
        if tt.ndim == 0:
            tt = tt.expand(b, f)
        elif tt.shape == (b,):
            tt = tt[:, None].expand(b, f)
        elif tt.shape != (b, f):
            raise ValueError(f"t must be a scalar, [B] or [B, F]; got {tuple(tt.shape)} for B={b}, F={f}")
        cond = None
        if labels is not None:
            labels = torch.as_tensor(labels) if not isinstance(labels, torch.Tensor) else labels
            if tuple(labels.shape[:2]) != (b, f):
                raise ValueError(f"labels must be [B, F, H, W] = [{b}, {f}, H, W], got {tuple(labels.shape)}")
            cond = self.labels_to_condition(labels).reshape(b * f, self.config.num_classes,
                                                             self.config.height, self.config.width)
        deg = None
        if degraded_latents is not None:
            if tuple(degraded_latents.shape) != tuple(x_t.shape):
                raise ValueError(f"degraded_latents {tuple(degraded_latents.shape)} must match x_t {tuple(x_t.shape)}")
            deg = degraded_latents.reshape(b * f, c, h, w)
        run = None
        if mode != "off":
            if self.temporal is not None and mode in ("bidirectional", "block") and f > self.temporal.max_frames:
                raise ValueError(f"{mode} temporal attention over {f} frames exceeds the adapter's "
                                 f"{self.temporal.max_frames} positions")
            run = TemporalRun(mode=mode, frames=f, lambda_t=lt, window=self.config.window)
        eps = self.denoise_rows(x_t.reshape(b * f, c, h, w), tt.reshape(-1), cond, deg, lc, lr, run)
        return eps.reshape(b, f, c, h, w)

    # -- training helpers -----------------------------------------------------------------------------
    def adapter_module(self, symbol: str) -> nn.Module:
        """The adapter named by its paper symbol ("psi", "omega", "phi"; synth/adapters.py)."""
        module = getattr(self, adapter(symbol).attribute)
        if module is None:
            raise ValueError(f"this model has no {symbol} module")
        return module

    def trainable_parameters(self, symbol: str) -> list[nn.Parameter]:
        """The parameters of psi (ControlNet), omega (W'^K, W'^V, W'^O) or phi (MotionAdapter)."""
        return list(self.adapter_module(symbol).parameters())

    def freeze_all_but(self, symbol: str | None) -> list[nn.Parameter]:
        """requires_grad only on the adapter ``symbol`` (None freezes everything); the backbone is always frozen."""
        for p in self.parameters():
            p.requires_grad_(False)
        if symbol is None:
            return []
        params = self.trainable_parameters(symbol)
        for p in params:
            p.requires_grad_(True)
        return params

    def parameter_counts(self) -> dict[str, int]:
        def count(m):
            return sum(p.numel() for p in m.parameters()) if m is not None else 0

        counts = {"backbone_unet": count(self.unet), "vae": count(self.vae)}
        counts.update((a.count_key, count(getattr(self, a.attribute))) for a in ADAPTERS)
        counts["total"] = sum(counts.values())
        return counts

    # -- saving / loading -----------------------------------------------------------------------------
    def save_module(self, symbol: str, path: str | Path) -> Path:
        """Save one adapter: psi -> ControlNet dir, omega -> .safetensors file, phi -> MotionAdapter dir."""
        from safetensors.torch import save_file

        module = self.adapter_module(symbol)
        path = Path(path)
        if symbol == OMEGA.symbol:
            path.parent.mkdir(parents=True, exist_ok=True)
            state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
            save_file(state, str(path), metadata={"format": "semcomm-restoration-adapter-v1",
                                                  "layers": ",".join(module.names)})
        elif symbol == PSI.symbol:
            module.save_pretrained(path, safe_serialization=True)
        else:
            module.motion.save_pretrained(path, safe_serialization=True)
        return path

    def load_module(self, symbol: str, path: str | Path) -> None:
        """Load one adapter's weights (same layout as save_module) into this model in place."""
        path = Path(path)
        module = self.adapter_module(symbol)
        if symbol == OMEGA.symbol:
            loaded = load_restoration_weights(path)
            try:
                module.load_state_dict(loaded, strict=True)
            except RuntimeError as exc:
                raise ValueError(f"{path} does not fit this backbone's Restoration Adapter: {exc}") from exc
            return
        if symbol == PSI.symbol:
            from diffusers import ControlNetModel
            new = ControlNetModel.from_pretrained(bb._require_dir(path, PSI.part), local_files_only=True)
            module.load_state_dict(new.state_dict(), strict=True)
            return
        from diffusers import MotionAdapter
        new = MotionAdapter.from_pretrained(bb._require_dir(path, PHI.part), local_files_only=True)
        module.motion.load_state_dict(new.state_dict(), strict=True)

    def save_pretrained(self, path: str | Path) -> Path:
        """Write the directory layout that ``from_pretrained`` reads (see docs/synth.md)."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        parts = dict(self.config.parts)
        self.unet.save_pretrained(path / parts["unet"], safe_serialization=True)
        self.vae.save_pretrained(path / parts["vae"], safe_serialization=True)
        self.scheduler.save_pretrained(path / parts["scheduler"])
        for a in ADAPTERS:
            if getattr(self, a.attribute) is not None:
                self.save_module(a.symbol, path / parts[a.part])
        if self.refiner is not None:
            parts["refiner"] = parts["refiner"] or "refiner"
            self.refiner.save_pretrained(path / parts["refiner"], safe_serialization=True)
        if bool(self.null_embedding.abs().sum() > 0):
            parts["null_embedding"] = parts["null_embedding"] or "null_embedding.safetensors"
            save_file({"null_embedding": self.null_embedding.detach().float().cpu().contiguous()},
                      str(path / parts["null_embedding"]))
        else:
            parts["null_embedding"] = None
        self.config.replace(parts=parts).save(path)
        return path

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None) -> "SynthModel":
        """Load a model directory (``synthesizer.json`` + parts); no argument = the shipped model."""
        if path is None:
            path = DEFAULT_MODEL_DIR
            if not (path / CONFIG_NAME).is_file():
                raise FileNotFoundError(
                    f"the shipped synthesizer model is missing: expected {path / CONFIG_NAME} and its parts "
                    f"(train it with `semcomm train ...` and save it there, or pass a model directory)")
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"synthesizer model directory {path} does not exist")
        config = SynthConfig.load(path)
        parts = config.parts
        unet = bb.load_unet(path / parts["unet"])
        vae = bb.load_vae(path / parts["vae"], config.vae_class)
        scheduler = bb.load_scheduler(path / parts["scheduler"])
        controlnet = restoration = temporal = None
        if parts.get(PSI.part):
            from diffusers import ControlNetModel
            controlnet = ControlNetModel.from_pretrained(bb._require_dir(path / parts[PSI.part], PSI.part),
                                                         local_files_only=True)
        if parts.get(OMEGA.part):
            file = path / parts[OMEGA.part]
            restoration = RestorationAdapter.from_unet(unet, init="random")
            try:
                restoration.load_state_dict(load_restoration_weights(file), strict=True)
            except RuntimeError as exc:
                raise ValueError(f"{file} does not fit the backbone's Restoration Adapter: {exc}") from exc
        if parts.get(PHI.part):
            from diffusers import MotionAdapter
            temporal = TemporalAdapter(MotionAdapter.from_pretrained(
                bb._require_dir(path / parts[PHI.part], PHI.part), local_files_only=True))
        refiner = None
        if parts.get("refiner"):
            # deferred: refiner.py imports diffusers at its top; importing this module stays torch-only
            from .refiner import SemanticRefiner
            refiner = SemanticRefiner.from_pretrained(bb._require_dir(path / parts["refiner"], "refiner"),
                                                      local_files_only=True)
        null = None
        if parts.get("null_embedding"):
            from safetensors.torch import load_file
            file = path / parts["null_embedding"]
            if not file.is_file():
                raise FileNotFoundError(f"missing null embedding file {file}")
            null = load_file(str(file))["null_embedding"]
        model = cls(config, unet, vae, scheduler=scheduler, controlnet=controlnet, restoration=restoration,
                    temporal=temporal, null_embedding=null, refiner=refiner)
        # safetensors hands out tensors at arbitrary offsets of the mapped file; BLAS kernels round
        # differently on unaligned memory, so fresh (aligned) copies make loading bit-exact.
        with torch.no_grad():
            for t in list(model.parameters()) + list(model.buffers()):
                t.data = t.data.clone()
        return model


def load_restoration_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing Restoration Adapter weight file {path}")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise ValueError(f"{path} is not a readable safetensors file: {exc}") from exc
