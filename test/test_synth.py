"""Proofs for the causal diffusion synthesizer (issue 5) on tiny random configurations."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from semcomm_ros.synth import CausalSynthesizer, SynthConfig, SynthModel
from semcomm_ros.synth.adapters import ADAPTERS, SYMBOLS, adapter, trained_in
from semcomm_ros.synth.temporal_adapter import block_causal_mask
from semcomm_ros.synth.tiny import tiny_model, tiny_unet, tiny_vae

# one thread: on the shared 2-core machines OpenMP workers of several processes otherwise
# spin against each other and tiny-tensor ops get ~10x slower
torch.set_num_threads(1)

RES = 32
FRAMES = 5


def _inputs(frames=FRAMES, seed=0, res=RES, classes=8):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, (frames, res, res)).astype(np.uint8)
    low = rng.integers(0, 256, (frames, res // 4, res // 4, 3)).astype(np.uint8)
    return labels, low


@pytest.fixture(scope="module")
def synth():
    return CausalSynthesizer.tiny(RES, seed=0)


def test_streaming_with_kv_cache_equals_masked_clip(synth):
    labels, low = _inputs()
    clip = synth.generate_clip(labels, low, seeds=range(10, 10 + FRAMES), output="float")
    synth.reset()
    stream = torch.stack([synth(labels[k], low[k], seed=10 + k, output="float") for k in range(FRAMES)])
    assert stream.shape == (FRAMES, 3, RES, RES)
    assert (stream - clip).abs().max().item() < 1e-4
    # the cache of every denoising step holds W-1 frames, no more (constant cost per frame)
    assert len(synth._caches) == synth.config.num_steps
    for cache in synth._caches:
        assert cache and all(k.shape[1] == synth.config.window - 1 for k, _ in cache.values())
    # the temporal attention really links frames: a different frame 0 changes frame 1
    labels2 = labels.copy()
    labels2[0] = (labels2[0] + 1) % 8
    ref = synth.generate_clip(labels[:2], low[:2], seeds=[10, 11], output="latent")
    other = synth.generate_clip(labels2[:2], low[:2], seeds=[10, 11], output="latent")
    assert (other[1] - ref[1]).abs().max() > 1e-2


def test_uint8_output_and_default_seeds(synth):
    labels, low = _inputs(frames=2)
    synth.reset()
    a = [synth(labels[k], low[k]) for k in range(2)]
    assert a[0].shape == (RES, RES, 3) and a[0].dtype == np.uint8
    b = synth.generate_clip(labels, low)
    assert np.abs(np.stack(a).astype(int) - b.astype(int)).max() <= 1


def test_causality_future_frames_never_change_the_past(synth):
    labels, low = _inputs(frames=6, seed=1)
    labels2, low2 = labels.copy(), low.copy()
    labels2[4:] = (labels2[4:] + 3) % 8
    low2[4:] = 255 - low2[4:]
    for mode in ("sliding", "block"):
        a = synth.generate_clip(labels, low, output="latent", temporal=mode)
        b = synth.generate_clip(labels2, low2, output="latent", temporal=mode)
        past = 3 if mode == "sliding" else 2  # block mode (W=3): frame 3 shares a block with frame 4
        assert (a[:past + 1] - b[:past + 1]).abs().max() < 1e-6, mode
        assert (a[4:] - b[4:]).abs().max() > 1e-3
    # Eq. 9's within-block look-ahead: frame 3 sees frame 4 in block mode (delay up to W-1)
    a = synth.generate_clip(labels, low, output="latent", temporal="block")
    b = synth.generate_clip(labels2, low2, output="latent", temporal="block")
    assert (a[3] - b[3]).abs().max() > 1e-4
    # the bidirectional teacher does leak the future into the past (the check above can fail)
    a = synth.generate_clip(labels, low, output="latent", temporal="bidirectional")
    b = synth.generate_clip(labels2, low2, output="latent", temporal="bidirectional")
    assert (a[0] - b[0]).abs().max() > 1e-4


def test_block_mask_is_eq9():
    w, k = 3, 8
    m = block_causal_mask(k, w)
    for i in range(1, k + 1):  # the paper's 1-based indices
        for j in range(1, k + 1):
            assert bool(m[i - 1, j - 1]) == ((j - 1) // w <= (i - 1) // w)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_zero_lambdas_equal_bare_backbone(prediction_type):
    from diffusers import LCMScheduler
    from diffusers.models.attention_processor import AttnProcessor2_0

    synth = CausalSynthesizer.tiny(RES, seed=3, lambda_c=0.0, lambda_r=0.0, lambda_t=0.0)
    model = synth.model
    model.scheduler = LCMScheduler.from_config(model.scheduler.config, prediction_type=prediction_type)
    labels, low = _inputs(frames=3)
    out = torch.stack([synth(labels[k], low[k], seed=k, output="latent") for k in range(3)])

    unet = copy.deepcopy(model.unet)
    unet._forward_hooks.clear()
    for m in unet.modules():
        m._forward_hooks.clear()
    unet.set_attn_processor(AttnProcessor2_0())
    sched = LCMScheduler.from_config(model.scheduler.config)
    ref = []
    with torch.no_grad():
        for k in range(3):
            gen = torch.Generator().manual_seed(k)
            x = torch.randn(1, 4, RES // 8, RES // 8, generator=gen)
            sched.set_timesteps(synth.config.num_steps)
            for t in sched.timesteps:
                eps = unet(x, t, encoder_hidden_states=torch.zeros(1, 1, unet.config.cross_attention_dim)).sample
                x = sched.step(eps, t, x, generator=gen).prev_sample
            ref.append(x[0])
    assert (out - torch.stack(ref)).abs().max().item() < 1e-4
    # and each module alone changes the output (the proof above is not vacuous)
    for name in ("lambda_c", "lambda_r", "lambda_t"):
        synth.config.__setattr__(name, 0.8)
        synth.reset()
        alt = torch.stack([synth(labels[k], low[k], seed=k, output="latent") for k in range(3)])
        synth.config.__setattr__(name, 0.0)
        assert (alt - out).abs().max() > 1e-3, name


def test_adapter_table_is_what_the_model_and_training_use(synth):
    from semcomm_ros.synth.config import default_parts
    from semcomm_ros.training.config import STAGES

    assert SYMBOLS == ("psi", "omega", "phi")
    for a in ADAPTERS:
        assert adapter(a.symbol) is a and trained_in(a.stage) is a and a.stage in STAGES
        assert a.part in default_parts() and synth.model.adapter_module(a.symbol) is getattr(synth.model, a.attribute)
        assert a.count_key in synth.model.parameter_counts()
    with pytest.raises(ValueError, match="adapter must be one of"):
        adapter("rho")


def test_trainable_parameter_sets_and_frozen_backbone():
    model = tiny_model(RES, seed=0)
    backbone = {id(p) for p in list(model.unet.parameters()) + list(model.vae.parameters())}
    sets = {s: {id(p) for p in model.trainable_parameters(s)} for s in ("psi", "omega", "phi")}
    assert sets["psi"] == {id(p) for p in model.controlnet.parameters()}
    assert sets["phi"] == {id(p) for p in model.temporal.motion.parameters()}
    names = [n for n, _ in model.restoration.named_parameters()]
    assert names and all(n.split(".")[-2] in ("to_k", "to_v", "to_out") for n in names)
    assert not (sets["psi"] & sets["omega"]) and not (sets["omega"] & sets["phi"]) and not (sets["psi"] & sets["phi"])
    assert not any(s & backbone for s in sets.values())
    assert not any(k.startswith("processor") or ".processor." in k for k in model.unet.state_dict())

    x = torch.randn(1, 3, 4, RES // 8, RES // 8)
    labels = torch.randint(0, 8, (1, 3, RES, RES))
    deg = torch.randn_like(x)
    for stage in ("psi", "omega", "phi"):
        model.freeze_all_but(stage)
        model.zero_grad(set_to_none=True)
        model.predict_noise(x, 500, labels, deg, temporal="causal").square().mean().backward()
        with_grad = {id(p) for p in model.parameters() if p.grad is not None}
        assert with_grad == sets[stage], stage
        assert any(p.grad.abs().sum() > 0 for p in model.trainable_parameters(stage))
        assert all(not p.requires_grad for p in list(model.unet.parameters()) + list(model.vae.parameters()))


def test_save_and_load_reproduce_outputs_bit_exactly(tmp_path):
    synth = CausalSynthesizer.tiny(RES, seed=5, window=2)
    labels, low = _inputs(frames=3, seed=2)
    a = torch.stack([synth(labels[k], low[k], output="float") for k in range(3)])
    path = synth.save_pretrained(tmp_path / "model")
    for part in ("synthesizer.json", "unet", "vae", "scheduler", "controlnet", "restoration_adapter.safetensors",
                 "temporal_adapter", "refiner"):
        assert (path / part).exists(), part
    loaded = CausalSynthesizer.from_pretrained(path, runtime="torch")  # bit-exact within a runtime
    assert loaded.config == synth.config
    b = torch.stack([loaded(labels[k], low[k], output="float") for k in range(3)])
    assert torch.equal(a, b)
    # the Temporal Adapter directory is a plain diffusers MotionAdapter
    from diffusers import MotionAdapter
    assert MotionAdapter.from_pretrained(path / "temporal_adapter").config.motion_max_seq_length == 32


def test_bidirectional_mode_is_animatediff():
    """phi in "bidirectional" mode computes exactly diffusers' UNetMotionModel (AnimateDiff)."""
    from diffusers import UNetMotionModel
    from diffusers.models.attention_processor import AttnProcessor2_0

    model = tiny_model(RES, seed=1).eval()
    x = torch.randn(1, 4, 4, RES // 8, RES // 8)
    with torch.no_grad():
        eps = model.predict_noise(x, 400, temporal="bidirectional")
        unet = copy.deepcopy(model.unet)
        for m in unet.modules():
            m._forward_hooks.clear()
        unet.set_attn_processor(AttnProcessor2_0())
        ref = UNetMotionModel.from_unet2d(unet, model.temporal.motion)(
            x.permute(0, 2, 1, 3, 4), torch.tensor([400]),
            encoder_hidden_states=torch.zeros(4, 1, unet.config.cross_attention_dim)).sample
    assert (eps - ref.permute(0, 2, 1, 3, 4)).abs().max() < 1e-5


def test_clear_errors(tmp_path, monkeypatch):
    synth = CausalSynthesizer.tiny(RES, seed=0)
    labels, low = _inputs(frames=1)
    with pytest.raises(ValueError, match="label map must have shape"):
        synth(labels[0, :16], low[0])
    bad = labels[0].copy()
    bad[0, 0] = 8
    with pytest.raises(ValueError, match="class id 8 .* 8 classes"):
        synth(bad, low[0])
    with pytest.raises(ValueError, match="degraded frame must be 8x8x3"):
        synth(labels[0], low[0, :4])
    with pytest.raises(ValueError, match="seeds"):
        synth.generate_clip(labels, low, seeds=[1, 2])
    with pytest.raises(ValueError, match="x_t frames"):
        synth.model.predict_noise(torch.zeros(1, 2, 4, 3, 3), 10)
    synth.config.causal = "block"
    with pytest.raises(ValueError, match="streaming runs the sliding-window"):
        synth(labels[0], low[0])
    synth.config.causal = "sliding"
    with pytest.raises(ValueError, match="exceeds the Temporal Adapter"):
        tiny_model(RES, window=40)
    path = synth.save_pretrained(tmp_path / "m")
    (path / "restoration_adapter.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="restoration_adapter.safetensors"):
        CausalSynthesizer.from_pretrained(path)
    for f in (path / "unet").glob("*.safetensors"):
        f.unlink()
    with pytest.raises(FileNotFoundError, match="unet"):
        CausalSynthesizer.from_pretrained(path)
    import semcomm_ros.synth.model as model_mod
    monkeypatch.setattr(model_mod, "DEFAULT_MODEL_DIR", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        CausalSynthesizer.from_pretrained()


def test_config_round_trips_and_validates():
    cfg = SynthConfig(height=64, width=96, num_classes=5, window=4, causal="block", lambda_r=0.5)
    assert SynthConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError, match="causal"):
        SynthConfig(causal="future")
    with pytest.raises(ValueError, match="multiples of 8"):
        SynthConfig(height=60)
    with pytest.raises(ValueError, match="unknown keys"):
        SynthConfig.from_dict({"lambda_x": 1})


def test_sd_layout_checkpoint_loads_from_local_directory(tmp_path):
    """An SD-1.5-layout directory (unet/, vae/ AutoencoderKL, scheduler/) becomes the backbone."""
    from diffusers import DDPMScheduler

    tiny_unet(RES).save_pretrained(tmp_path / "unet")
    tiny_vae(vae_class="AutoencoderKL").save_pretrained(tmp_path / "vae")
    DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012).save_pretrained(
        tmp_path / "scheduler")
    null = torch.randn(1, 3, 32)
    model = SynthModel.from_sd_checkpoint(tmp_path, SynthConfig(height=RES, width=RES), null_embedding=null)
    assert model.config.vae_class == "AutoencoderKL" and model.config.null_tokens == 3
    assert torch.equal(model.null_embedding, null)
    eps = model.predict_noise(torch.randn(1, 2, 4, RES // 8, RES // 8), 500,
                              torch.zeros(1, 2, RES, RES, dtype=torch.long))
    assert eps.shape == (1, 2, 4, RES // 8, RES // 8)
    model.save_pretrained(tmp_path / "out")  # the non-zero null embedding travels with the model
    assert torch.equal(SynthModel.from_pretrained(tmp_path / "out").null_embedding, null)
    with pytest.raises(FileNotFoundError, match="text_encoder"):
        SynthModel.from_sd_checkpoint(tmp_path)


@pytest.mark.parametrize("window,noise", [(1, "forward"), (2, "none")])
def test_streaming_equals_clip_other_windows(window, noise):
    synth = CausalSynthesizer.tiny(RES, seed=4, window=window, degraded_noise=noise)
    labels, low = _inputs(frames=3, seed=3)
    clip = synth.generate_clip(labels, low, seeds=[3, 1, 2], output="latent")
    stream = torch.stack([synth(labels[k], low[k], seed=s, output="latent") for k, s in enumerate([3, 1, 2])])
    assert (stream - clip).abs().max().item() < 1e-4


def test_strength_starts_from_the_degraded_frame_and_streams_like_the_clip():
    """strength < 1 skips the first steps and starts from the forward-noised degraded latent;
    streaming still equals the masked clip, and the start really depends on the degraded frame."""
    synth = CausalSynthesizer.tiny(RES, seed=2, strength=0.5)
    assert synth.config.start_step == 2
    labels, low = _inputs(frames=3, seed=5)
    clip = synth.generate_clip(labels, low, seeds=[4, 5, 6], output="latent")
    stream = torch.stack([synth(labels[k], low[k], seed=s, output="latent") for k, s in enumerate([4, 5, 6])])
    assert (stream - clip).abs().max().item() < 1e-4
    # only the steps that run fill a KV cache
    assert [bool(c) for c in synth._caches] == [False, False, True, True]
    other = synth.generate_clip(labels, 255 - low, seeds=[4, 5, 6], output="latent")
    full = CausalSynthesizer.tiny(RES, seed=2, lambda_r=0.0).generate_clip(labels, low, seeds=[4, 5, 6],
                                                                          output="latent")
    half = CausalSynthesizer.tiny(RES, seed=2, lambda_r=0.0, strength=0.5).generate_clip(
        labels, low, seeds=[4, 5, 6], output="latent")
    assert (other - clip).abs().max() > 1e-2
    assert (half - full).abs().max() > 1e-2  # with omega off, only the start can carry the frame
    with pytest.raises(ValueError, match="strength"):
        synth.generate_clip(labels, None)
    with pytest.raises(ValueError, match="strength"):
        SynthConfig(strength=0.0)
    # a stream with no degraded frame yet starts from noise, then from its previous output
    synth.reset()
    a = synth(labels[0], None, seed=1, output="latent")
    b = synth(labels[1], None, seed=2, output="latent")
    assert torch.isfinite(a).all() and torch.isfinite(b).all()


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_prediction_types_round_trip(prediction_type):
    """target() is what the UNet learns; split_output() inverts it back to (x0, noise) at x_t."""
    from diffusers import LCMScheduler

    model = CausalSynthesizer.tiny(RES, seed=1).model
    model.scheduler = LCMScheduler.from_config(model.scheduler.config, prediction_type=prediction_type)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 4, 8, 8, generator=gen)
    noise = torch.randn(3, 4, 8, 8, generator=gen)
    t = torch.tensor([999, 500, 20])
    x_t = model.add_noise(x0, t, noise)
    out = model.target(x0, noise, t)
    if prediction_type == "v_prediction":
        from diffusers import DDPMScheduler

        ref = DDPMScheduler.from_config(model.scheduler.config).get_velocity(x0, noise, t)
        assert torch.allclose(out, ref, atol=1e-5)
    x0_hat, noise_hat = model.split_output(x_t, out, t)
    tol = 1e-2 if prediction_type == "sample" else 1e-4  # "sample" divides by sqrt(1 - abar_20)
    assert torch.allclose(x0_hat, x0, atol=tol) and torch.allclose(noise_hat, noise, atol=tol)
    model.scheduler = LCMScheduler.from_config(model.scheduler.config, prediction_type="flow")
    with pytest.raises(ValueError, match="unsupported prediction_type"):
        model.target(x0, noise, t)


def test_shared_noise_reuses_the_first_frames_draws():
    """noise="shared": an unchanged scene is synthesized the same on every frame (the per-frame
    seeds no longer matter), streaming still equals the clip; "per_frame" draws anew each frame."""
    labels, low = _inputs(frames=1, seed=7)
    labels, low = np.repeat(labels, 3, axis=0), np.repeat(low, 3, axis=0)
    shared = CausalSynthesizer.tiny(RES, seed=6, lambda_t=0.0, noise="shared")
    per_frame = CausalSynthesizer.tiny(RES, seed=6, lambda_t=0.0)
    a = shared.generate_clip(labels, low, seeds=[8, 9, 10], output="latent")
    b = per_frame.generate_clip(labels, low, seeds=[8, 9, 10], output="latent")
    assert (a[1:] - a[0]).abs().max().item() < 1e-5
    assert (b[1:] - b[0]).abs().max().item() > 1e-2
    assert (a[0] - b[0]).abs().max().item() < 1e-5  # frame 0 is seed 8 in both modes
    shared.reset()
    stream = torch.stack([shared(labels[k], low[k], seed=s, output="latent") for k, s in enumerate([8, 9, 10])])
    assert (stream - a).abs().max().item() < 1e-4
    with_t = CausalSynthesizer.tiny(RES, seed=6, noise="shared")
    clip = with_t.generate_clip(labels, low, seeds=[8, 9, 10], output="latent")
    with_t.reset()
    stream = torch.stack([with_t(labels[k], low[k], seed=s, output="latent") for k, s in enumerate([8, 9, 10])])
    assert (stream - clip).abs().max().item() < 1e-4
    with pytest.raises(ValueError, match="noise"):
        SynthConfig(noise="fresh")


def test_semantic_refiner_acts_and_lambda_rho_zero_is_the_plain_decoder():
    from semcomm_ros.synth.refiner import SemanticRefiner

    synth = CausalSynthesizer.tiny(RES, seed=7, window=2)
    labels, low = _inputs(frames=2, seed=3)
    refined = synth.generate_clip(labels, low, output="float")
    synth.config.lambda_rho = 0.0
    plain = synth.generate_clip(labels, low, output="float")
    latents = synth.generate_clip(labels, low, output="latent")
    with torch.inference_mode():
        decoded = synth.model.decode_latents(latents).float()
    assert torch.equal(plain, decoded)
    assert (refined - plain).abs().mean() > 1e-3  # rho changes the frame...
    # ... and a fresh rho (zero last convolution) leaves it exactly as the VAE decoded it
    fresh = SemanticRefiner(num_classes=8, channels=(8, 8, 8))
    cond = synth.model.labels_to_condition(torch.as_tensor(labels)).float()
    deg = torch.zeros(2, 3, RES // 4, RES // 4)
    with torch.inference_mode():
        assert torch.equal(fresh(decoded, cond, deg), decoded)
    with pytest.raises(ValueError, match="classes"):
        fresh(decoded, cond[:, :5], deg)


def test_a_latent_patch_runs_the_unet_on_a_finer_vae_latent(tmp_path):
    """v6's layout (latent_patch 2): an f=4 VAE's latent reaches the UNet 2x2 cells at a time
    (space-to-depth), the round trip is the VAE's own, streaming still equals the clip, and the
    model saves and loads with its patch."""
    from semcomm_ros.synth import backbone as bb

    model = tiny_model(RES, seed=5, latent_patch=2)
    cfg = model.config
    assert (cfg.vae_factor, cfg.latent_patch, cfg.latent_height) == (4, 2, RES // 8)
    assert model.unet.config.in_channels == 4 * model.vae.config.latent_channels
    images = torch.rand(2, 3, RES, RES) * 2 - 1
    z = model.encode_images(images)
    raw = model.vae.encode(images).latents * bb.vae_scaling(model.vae)[0]
    assert z.shape == (2, 16, RES // 8, RES // 8) and raw.shape == (2, 4, RES // 4, RES // 4)
    assert torch.equal(bb.from_patches(z, 2), raw)  # a rearrangement, nothing lost
    assert torch.allclose(model.decode_latents(z), model.vae.decode(raw).sample)
    synth = CausalSynthesizer(model, runtime="torch")
    labels, low = _inputs(frames=3, seed=6)
    clip = synth.generate_clip(labels, low, seeds=[1, 2, 3], output="float")
    stream = torch.stack([synth(labels[k], low[k], seed=k + 1, output="float") for k in range(3)])
    assert (stream - clip).abs().max().item() < 1e-4
    model.save_pretrained(tmp_path / "v6")
    again = SynthModel.from_pretrained(tmp_path / "v6")
    assert (again.config.vae_factor, again.config.latent_patch) == (4, 2)
    with pytest.raises(ValueError, match="latent patch"):
        SynthModel(cfg.replace(latent_patch=1), model.unet, model.vae)


def test_cross_attention_to_a_one_token_null_embedding_skips_the_queries_exactly():
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0

    from semcomm_ros.synth.backbone import OneTokenCrossAttnProcessor

    model = tiny_model(RES, seed=4).eval()
    cross = [m for net in (model.unet, model.controlnet) for m in net.modules()
             if isinstance(m, Attention) and m.is_cross_attention]
    assert cross and all(isinstance(m.processor, OneTokenCrossAttnProcessor) for m in cross)
    # a non-zero token: with the zero default only to_out's bias would be compared
    model.null_embedding.copy_(torch.randn_like(model.null_embedding))
    torch.manual_seed(0)
    x = torch.randn(2, model.unet.config.in_channels, RES // 8, RES // 8)
    t = torch.tensor([500, 500])
    onehot = torch.nn.functional.one_hot(torch.randint(0, 8, (2, RES, RES)), 8).permute(0, 3, 1, 2).float()
    general = []
    for m in cross:  # the fast path, not diffusers' processor, answers every call
        m.processor.general = lambda *a, **k: general.append(a) or AttnProcessor2_0()(*a, **k)
    with torch.no_grad():
        fast = model.denoise_rows(x, t, onehot, None, 1.0, 0.0, None)
        assert not general
        for m in cross:
            m.set_processor(AttnProcessor2_0())
        full = model.denoise_rows(x, t, onehot, None, 1.0, 0.0, None)
    assert (fast - full).abs().max().item() < 1e-5
    assert (fast - model.denoise_rows(x, t, None, None, 0.0, 0.0, None)).abs().max().item() > 1e-3  # psi acts
