"""Training stages on tiny configs: each lowers its loss on a fixed batch, frozen parts stay
bit-identical, only the stage's parameters train, checkpoints round-trip and resume exactly."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from semcomm_ros.synth.adapters import ADAPTERS, OMEGA, trained_in
from semcomm_ros.training import adapters as ad
from semcomm_ros.training import losses
from semcomm_ros.training.assembly import random_model
from semcomm_ros.training.backbone import BackboneStage, VAEStage, build_scheduler
from semcomm_ros.training.config import get_preset
from semcomm_ros.training.data import BatchSampler, build_clipset
from semcomm_ros.training.trainer import Trainer

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def preset():
    return get_preset("tiny")


@pytest.fixture(scope="module")
def clips(preset):
    return build_clipset(preset.data, degradation="realesrgan", cache=False, progress=False)


def _model(preset, seed=0):
    return random_model(preset, seed, window=2)


@pytest.fixture(scope="module")
def encoded(preset, clips):
    return ad.EncodedClips.build(_model(preset), clips, cache_file=None, progress=False)


def _fixed(batch):
    # same clips and the same noise/timesteps every step: the loss is a fixed function
    batch = dict(batch, seed=123)
    return lambda step: batch


def _loss(stage, batch, phase="main"):
    with torch.no_grad():
        return float(stage(dict(batch, seed=123), 0, phase))


def _train_fixed(stage, cfg, batch, tmp_path, steps, phases=None, name="run"):
    tr = Trainer(stage, cfg, tmp_path / name, _fixed(batch), phases=phases, progress=False, cpu=True)
    tr.run(steps)
    return tr


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def _cfg(preset, stage, **kw):
    from dataclasses import replace

    return replace(preset.stage(stage), **{"checkpoint_every": 0, **kw})


def test_vae_and_backbone_lower_their_loss(preset, clips, tmp_path):
    batch = BatchSampler(clips, 4, seed=1).batch(0)
    vs = VAEStage(preset.backbone)
    before = _loss(vs, batch)
    _train_fixed(vs, _cfg(preset, "vae", lr=3e-3), batch, tmp_path, 8, name="vae")
    assert _loss(vs, batch) < before

    lat = torch.randn(4, preset.backbone.latent_channels, 4, 4)
    bs = BackboneStage(preset.backbone, 4)
    b = {"latents": lat}
    before = _loss(bs, b)
    _train_fixed(bs, _cfg(preset, "backbone", lr=3e-3), b, tmp_path, 8, name="bb")
    assert _loss(bs, b) < before


def test_vae_object_weight_weights_object_pixels(preset, clips):
    """The weighted loss is the object-weighted mean |error|: it equals plain L1 where the batch has
    no object pixel and differs from it where it has some."""
    from dataclasses import replace

    bb = replace(preset.backbone, vae_crop=0)
    torch.manual_seed(0)
    plain, weighted = VAEStage(bb), VAEStage(bb, object_weight=9.0)
    weighted.load_state_dict(plain.state_dict())
    batch = BatchSampler(clips, 4, seed=1).batch(0)
    assert (batch["labels"] > 0).any()
    assert _loss(weighted, batch) != pytest.approx(_loss(plain, batch), rel=1e-6)
    empty = dict(batch, labels=np.zeros_like(batch["labels"]))
    assert _loss(weighted, empty) == pytest.approx(_loss(plain, empty), rel=1e-6)


def test_diffusion_object_weight_weights_object_cells(preset):
    """Latent cells count by their share of object pixels; no object pixel -> plain MSE."""
    labels = torch.zeros(2, 32, 32, dtype=torch.long)
    labels[0, :8, :8] = 3  # one whole latent cell (1/8 scale) of object in the first sample
    labels[0, 8:12, 8:16] = 5  # half a cell
    w = losses.object_weights(labels, (4, 4), 4.0)
    assert w.shape == (2, 1, 4, 4)
    assert w[0, 0, 0, 0] == pytest.approx(5.0) and w[0, 0, 1, 1] == pytest.approx(3.0)
    assert torch.all(w[1] == 1.0) and losses.object_weights(labels, (4, 4), 0.0) is None
    pred, target = torch.randn(2, 4, 4, 4), torch.randn(2, 4, 4, 4)
    assert losses.weighted_mse(pred, target, torch.ones(2, 1, 4, 4)) == pytest.approx(
        float(((pred - target) ** 2).mean()))
    assert float(losses.weighted_mse(pred, target, w)) != pytest.approx(float(((pred - target) ** 2).mean()))

    torch.manual_seed(0)
    lat = torch.randn(2, preset.backbone.latent_channels, 4, 4)
    plain = BackboneStage(preset.backbone, 4)
    weighted = BackboneStage(preset.backbone, 4, object_weight=4.0)
    weighted.load_state_dict(plain.state_dict())
    batch = {"latents": lat, "labels": labels[:, None].numpy()}
    assert _loss(weighted, batch) != pytest.approx(_loss(plain, batch), rel=1e-6)
    empty = dict(batch, labels=np.zeros_like(batch["labels"]))
    assert _loss(weighted, empty) == pytest.approx(_loss(plain, empty), rel=1e-6)


def test_tabletop_backbone_predicts_v():
    """The shipped preset trains v-prediction; the saved scheduler carries it to the synthesizer."""
    assert build_scheduler(get_preset("tabletop").backbone).config.prediction_type == "v_prediction"
    assert build_scheduler(get_preset("paper").backbone).config.prediction_type == "epsilon"  # SD 1.5


def test_shipped_model_matches_the_tabletop_preset():
    """What `train all --preset tabletop` assembles samples like the shipped model: v-prediction,
    shared noise draws (the paper preset keeps per-frame draws)."""
    from semcomm_ros.synth import SynthConfig
    from semcomm_ros.synth.backbone import load_scheduler
    from semcomm_ros.synth.model import DEFAULT_MODEL_DIR

    shipped = SynthConfig.load(DEFAULT_MODEL_DIR)
    assert shipped.noise == get_preset("tabletop").backbone.noise == "shared"
    assert get_preset("paper").backbone.noise == "per_frame"
    assert load_scheduler(DEFAULT_MODEL_DIR / "scheduler").config.prediction_type == "v_prediction"
    # the operating point too: the preset writes it into the model it assembles (not by hand)
    from semcomm_ros.training.config import OPERATING_POINT

    assembled = random_model(get_preset("tabletop")).config
    for name in (*OPERATING_POINT, "noise"):
        assert getattr(assembled, name) == getattr(shipped, name), name
    with pytest.raises(ValueError, match="operating_point fields"):
        get_preset("tabletop").__class__(name="x", operating_point={"height": 64})


def test_vae_and_backbone_warm_start_from_a_model_directory(preset, tmp_path):
    """--init: stage vae/backbone start from the weights of an existing model directory."""
    from dataclasses import replace

    from semcomm_ros.training.backbone import save_backbone
    from semcomm_ros.training.pipeline import run_stage

    src = _model(preset, seed=5)
    save_backbone(tmp_path / "src", src.vae, src.unet, 1.0, preset.backbone)
    tiny = replace(preset, stages={**preset.stages,
                                   "vae": replace(preset.stage("vae"), steps=1, lr=1e-12, checkpoint_every=0),
                                   "backbone": replace(preset.stage("backbone"), steps=1, lr=1e-12,
                                                       checkpoint_every=0)})
    run_stage("vae", tiny, tmp_path / "run", overrides={"init": str(tmp_path / "src")}, progress=False)
    from semcomm_ros.synth.backbone import load_vae

    vae = load_vae(tmp_path / "run" / "model" / "vae")
    for k, v in src.vae.state_dict().items():
        assert torch.allclose(vae.state_dict()[k], v, atol=1e-6), k
    run_stage("backbone", tiny, tmp_path / "run", overrides={"init": str(tmp_path / "src")}, progress=False)
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(tmp_path / "run" / "model" / "unet")
    for k, v in src.unet.state_dict().items():
        assert torch.allclose(unet.state_dict()[k], v, atol=1e-6), k


def test_control_starts_from_a_given_controlnet_on_a_trained_backbone(preset, tmp_path):
    """--controlnet: psi starts from that ControlNet, also when the backbone is the run's own (the
    tabletop presets); the run's model directory was assembled with a fresh psi before."""
    from dataclasses import replace

    from diffusers import ControlNetModel

    from semcomm_ros.training.backbone import save_backbone
    from semcomm_ros.training.pipeline import run_stage

    src = _model(preset, seed=5)
    src.controlnet.save_pretrained(tmp_path / "psi")
    save_backbone(tmp_path / "run" / "model", src.vae, src.unet, 1.0, preset.backbone)
    one_step = replace(preset, stages={**preset.stages, "control": replace(preset.stage("control"), steps=1, lr=1e-12,
                                                                           checkpoint_every=0)})
    run_stage("control", one_step, tmp_path / "run", progress=False)  # a fresh psi: the directory's
    fresh = ControlNetModel.from_pretrained(tmp_path / "run" / "model" / "controlnet").state_dict()
    given = replace(one_step, pretrained=replace(one_step.pretrained, controlnet=str(tmp_path / "psi")))
    run_stage("control", given, tmp_path / "run", progress=False)
    psi = ControlNetModel.from_pretrained(tmp_path / "run" / "model" / "controlnet").state_dict()
    want = src.controlnet.state_dict()
    assert all(torch.allclose(psi[k], v, atol=1e-6) for k, v in want.items())
    assert not all(torch.allclose(fresh[k], v, atol=1e-6) for k, v in want.items())


@pytest.mark.parametrize("kind", ["control", "restoration", "teacher"])
def test_adapter_stage_lowers_loss_and_trains_only_its_adapter(kind, preset, clips, encoded, tmp_path):
    model = _model(preset)
    cls = {"control": ad.ControlStage, "restoration": ad.RestorationStage, "teacher": ad.TeacherStage}[kind]
    part = trained_in(kind).symbol
    cfg = _cfg(preset, kind, lr=3e-3)
    stage = cls(model, encoded, cfg)
    batch = BatchSampler(clips, 2, frames=cfg.frames, seed=3).batch(0)
    modules = {"unet": model.unet, "vae": model.vae, **{a.symbol: getattr(model, a.attribute) for a in ADAPTERS}}
    frozen = {n: _snapshot(m) for n, m in modules.items() if n != part}
    trained = _snapshot(model.adapter_module(part))
    before = _loss(stage, batch)
    _train_fixed(stage, cfg, batch, tmp_path, 6)
    assert _loss(stage, batch) < before
    for name, snap in frozen.items():
        assert _same(snap, modules[name].state_dict()), f"{name} changed while training {part}"
    assert not _same(trained, model.adapter_module(part).state_dict())
    # omega is exactly W'K, W'V, W'O of every self-attention layer
    if part == OMEGA.symbol:
        names = {n.rsplit(".", 2)[-2] for n, _ in model.restoration.named_parameters()}
        assert names == {"to_k", "to_v", "to_out"}


def test_lcm_lowers_loss_with_teacher_frozen(preset, clips, encoded, tmp_path):
    model = _model(preset)
    cfg = _cfg(preset, "lcm", lr=3e-3, teacher_samples=2, teacher_steps=2, frames=4)
    teacher = copy.deepcopy(model.temporal)
    with torch.no_grad():  # a teacher that acts (AnimateDiff's proj_out starts at zero)
        for n, p in teacher.named_parameters():
            if "proj_out" in n:
                p.normal_(0, 0.1)
    t_snap = _snapshot(teacher)
    samples = ad.sample_teacher(model, teacher, encoded, clips, cfg, progress=False)
    assert samples["x0"].shape[:2] == (2, 4)
    stage = ad.LCMStage(model, encoded, cfg, teacher, samples)
    batch = {"sample": np.array([0, 1])}
    before = _loss(stage, batch)
    _train_fixed(stage, cfg, batch, tmp_path, 6)
    assert _loss(stage, batch) < before
    assert _same(t_snap, teacher.state_dict())


def test_dmd_alternates_student_and_critic_on_temporal_adapters_only(preset, clips, encoded, tmp_path):
    model = _model(preset)
    cfg = _cfg(preset, "dmd", lr=3e-3, frames=4, student_steps=2)
    teacher = copy.deepcopy(model.temporal)
    with torch.no_grad():
        for n, p in teacher.named_parameters():
            if "proj_out" in n:
                p.normal_(0, 0.1)
    critic = copy.deepcopy(teacher)
    stage = ad.DMDStage(model, encoded, cfg, teacher, critic)
    trainable = {id(p) for p in stage.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in stage.student_parameters() + stage.critic_parameters()}
    snaps = {"unet": _snapshot(model.unet), "psi": _snapshot(model.controlnet), "omega": _snapshot(model.restoration),
             "teacher": _snapshot(teacher)}
    student0 = _snapshot(model.temporal)
    batch = BatchSampler(clips, 1, frames=4, seed=5).batch(0)

    # Eq. 6 step: the student's sample x^ moves toward x^ - (s_fake - s_real) direction's target
    g = torch.Generator().manual_seed(9)
    fake = stage(batch, 0, "student", generator=g)
    critic_before = _loss(stage, batch, "critic")
    phases = {"student": stage.student_parameters(), "critic": stage.critic_parameters()}
    _train_fixed(stage, cfg, batch, tmp_path, 4, phases=phases)
    assert float(fake.detach()) >= 0
    assert _loss(stage, batch, "critic") < critic_before
    assert not _same(student0, model.temporal.state_dict())
    for name, mod in (("unet", model.unet), ("psi", model.controlnet), ("omega", model.restoration),
                      ("teacher", teacher)):
        assert _same(snaps[name], mod.state_dict()), f"{name} changed during DMD"
    # the contract is asserted, not assumed
    model.unet.conv_in.weight.requires_grad_(True)
    with pytest.raises(AssertionError, match="outside"):
        stage._check_trainable(stage.student_parameters() + stage.critic_parameters())
    model.unet.conv_in.weight.requires_grad_(False)


def test_checkpoint_round_trip_and_exact_resume(preset, clips, encoded, tmp_path):
    cfg = _cfg(preset, "control", lr=3e-3, checkpoint_every=2)
    sampler = BatchSampler(clips, 2, seed=4)

    def trainer(name):
        torch.manual_seed(0)
        st = ad.ControlStage(_model(preset), encoded, cfg)
        return Trainer(st, cfg, tmp_path / name, sampler.batch, progress=False, cpu=True)

    full = trainer("full")
    full.run(4)
    part = trainer("part")
    part.run(2)
    assert [p.name for p in part.checkpoints()] == ["step_2"]
    resumed = trainer("part")
    assert resumed.load_checkpoint() == 2
    assert _same(_snapshot(part.unwrap().model.controlnet), resumed.unwrap().model.controlnet.state_dict())
    resumed.run(4)
    a, b = full.unwrap().model.controlnet.state_dict(), resumed.unwrap().model.controlnet.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    log = (tmp_path / "part" / "log.csv").read_text().splitlines()
    assert log[0].startswith("step,phase,loss") and log[-1].startswith("4,main,")
    with pytest.raises(FileNotFoundError):
        resumed.load_checkpoint(tmp_path / "nowhere")



def test_restoration_with_control_runs_psi(preset, clips, encoded):
    """with_control (tabletop): omega's loss is taken with psi on at lambda_c, so the label maps
    matter; without it (the paper's recipe) they do not."""
    assert get_preset("tabletop").stage("restoration").with_control
    assert not get_preset("paper").stage("restoration").with_control
    model = _model(preset)
    with torch.no_grad():  # psi starts as zero residuals; give it some so labels can act
        for p in model.controlnet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    batch = BatchSampler(clips, 2, frames=1, seed=3).batch(0)
    other = dict(batch, labels=(np.asarray(batch["labels"]) + 1) % 8)
    for flag in (False, True):
        st = ad.RestorationStage(model, encoded, _cfg(preset, "restoration", with_control=flag, lambda_c=0.7,
                                                      object_weight=0.0))
        same = _loss(st, batch) == pytest.approx(_loss(st, other), rel=1e-6)
        assert same is (not flag)


def test_decoded_labels_are_what_the_operator_receives_and_the_sampler_conditions_on_them(preset, clips, tmp_path,
                                                                                          monkeypatch):
    """StageConfig.decoded_labels: psi can learn the label maps it is given in use, the robot's
    segmenter and the semantic codec's over the 2 kbps link, against the camera's frame."""
    import dataclasses

    from semcomm_ros.training import sources
    from semcomm_ros.training.data import flip_array

    monkeypatch.setattr(sources, "CACHE_DIR", tmp_path)
    dec = sources.decoded_labels(preset.data, progress=False)
    assert dec.shape == clips.labels.shape and dec.dtype == np.uint8
    # the same scenes, coarsened by the segmenter and the contours: mostly, not exactly, the truth
    assert (dec == clips.labels).mean() > 0.8 and not np.array_equal(dec, clips.labels)
    assert len(list(tmp_path.glob("decoded_*.npz"))) == 1
    assert np.array_equal(sources.decoded_labels(preset.data, progress=False), dec)  # from the cache

    plain = BatchSampler(clips, 4, seed=3).batch(5)
    both = dataclasses.replace(clips, decoded=dec)
    unchanged = BatchSampler(both, 4, seed=3).batch(5)  # share 0: the batches drawn before
    assert all(np.array_equal(plain[k], unchanged[k]) for k in plain)
    b = BatchSampler(both, 4, seed=3, decoded_share=1.0).batch(5)
    assert np.array_equal(b["frames"], plain["frames"])  # the target stays the camera's frame
    for i in range(4):
        want = flip_array(dec[b["clip"][i], b["start"][i]:b["start"][i] + 1], b["flip"][i], spatial_axes=(1, 2))
        assert np.array_equal(b["labels"][i], want)
    with pytest.raises(ValueError, match="decoded label maps"):
        BatchSampler(clips, 4, decoded_share=0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        BatchSampler(both, 4, decoded_share=1.5)


def test_refiner_stage_on_the_whole_chain_lowers_loss_trains_only_rho_and_saves_it(preset, tmp_path):
    from semcomm_ros.synth import SynthModel
    from semcomm_ros.training import refiner as rf
    from semcomm_ros.training.assembly import MODEL

    root = tmp_path / "run"
    model = _model(preset)
    model.save_pretrained(root / MODEL)
    cfg = _cfg(preset, "refiner", lr=3e-3, batch_size=4)
    plan = rf.plan_refiner(preset, cfg, root, resume=False, progress=False)
    st = plan.module
    n = plan.info["chain_samples"]
    assert n == preset.data.clips * preset.data.frames_per_clip  # one sample a camera frame
    frozen = {name: _snapshot(getattr(st.model, name)) for name in ("unet", "vae", "controlnet", "temporal")}
    batch = plan.batch_fn(0)
    before = _loss(st, batch)
    trained = _snapshot(st.refiner)
    _train_fixed(st, cfg, batch, tmp_path, 8, phases={"main": list(st.refiner.parameters())})
    assert _loss(st, batch) < before
    for name, snap in frozen.items():
        assert _same(snap, getattr(st.model, name).state_dict()), f"{name} changed while training rho"
    assert not _same(trained, st.refiner.state_dict())
    plan.finish(st)
    loaded = SynthModel.from_pretrained(root / MODEL)
    assert loaded.config.parts["refiner"] == "refiner" and loaded.refiner is not None
    assert _same(_snapshot(st.refiner), loaded.refiner.state_dict())


def test_a_latent_patch_preset_trains_its_backbone_on_patched_latents(preset, tmp_path):
    """The tabletop preset's layout (version 6) on the tiny preset: an f=4 VAE, the UNet on its
    latents 2x2 at a time; the vae and backbone stages run and the assembled model streams with
    the patch."""
    from dataclasses import replace

    from semcomm_ros.synth import CausalSynthesizer, SynthModel
    from semcomm_ros.training.pipeline import run_stage

    bb = replace(preset.backbone, vae_encoder_blocks=(0, 1, 1), vae_decoder_blocks=(1, 1, 0), latent_patch=2)
    f4 = replace(preset, backbone=bb, stages={**preset.stages,
                                               "vae": replace(preset.stage("vae"), steps=1, checkpoint_every=0),
                                               "backbone": replace(preset.stage("backbone"), steps=1,
                                                                   checkpoint_every=0)})
    run_stage("vae", f4, tmp_path / "run", progress=False)
    run_stage("backbone", f4, tmp_path / "run", progress=False)
    # the tabletop preset's VAE schedule: lr halved from lr_halve_at on (one stage, as the shipped
    # VAE's two runs were)
    halved = replace(f4, stages={**f4.stages, "vae": replace(f4.stage("vae"), steps=3, lr_halve_at=2, log_every=1)})
    run_stage("vae", halved, tmp_path / "halved", progress=False)
    lrs = [float(r.split(",")[3]) for r in (tmp_path / "halved" / "vae" / "log.csv").read_text().splitlines()[1:]]
    # the log's lr is the rate after the step (its scheduler stepped): steps 1 and 2 ran at lr, 3 at lr/2
    assert lrs == pytest.approx([preset.stage("vae").lr] + [preset.stage("vae").lr / 2] * 2), lrs
    assert get_preset("tabletop").stage("vae").lr_halve_at == 3000
    model = SynthModel.from_pretrained(tmp_path / "run" / "model")
    res = preset.data.resolution
    assert (model.config.vae_factor, model.config.latent_patch) == (4, 2)
    assert model.unet.config.in_channels == 4 * bb.latent_channels and model.unet.config.sample_size == res // 8
    synth = CausalSynthesizer(model, runtime="torch")
    frame = synth(np.zeros((res, res), np.uint8), np.zeros((res // 4, res // 4, 3), np.uint8), seed=0)
    assert frame.shape == (res, res, 3)


@pytest.mark.parametrize("encoder,decoder,patch", [((0, 1, 1), (1, 1, 0), 1), ((0, 1, 1, 1), (1, 1, 1, 0), 2)])
def test_psi_hint_encoder_lands_on_the_unet_grid_for_any_vae_factor_and_patch(preset, encoder, decoder, patch):
    """psi's hint encoder brings the label map down to the UNet's grid, f * p frame pixels per cell:
    an f=4 VAE without a patch (4x) and an f=8 VAE with a 2x2 patch (16x) stream a frame."""
    from dataclasses import replace

    from semcomm_ros.synth import CausalSynthesizer

    bb = replace(preset.backbone, vae_encoder_blocks=encoder, vae_decoder_blocks=decoder, latent_patch=patch)
    model = _model(replace(preset, backbone=bb))
    res, f = preset.data.resolution, model.config.vae_factor
    levels = len(model.controlnet.config.conditioning_embedding_out_channels)
    assert 2 ** (levels - 1) == f * patch == res // model.unet.config.sample_size
    synth = CausalSynthesizer(model, runtime="torch")
    frame = synth(np.ones((res, res), np.uint8), np.zeros((res // 4, res // 4, 3), np.uint8), seed=0)
    assert frame.shape == (res, res, 3)
