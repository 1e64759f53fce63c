"""Bring your own weights and scenes (issue 15), without downloads: tiny random checkpoints written
here in the exact public layouts (diffusers Stable Diffusion folder, AnimateDiff MotionAdapter folder
and original motion-module file, RGB ControlNet), a bag recorded with the project's own tools, one
step of every stage on them, and the exported model loaded by the synthesizer."""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from semcomm_ros.training import cli
from semcomm_ros.training.config import DataConfig, PretrainedConfig, get_preset

torch.set_num_threads(1)
RES = 32  # frames; latents 4x4
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _tokenizer_files(d: Path) -> None:
    vocab = ["<|startoftext|>", "<|endoftext|>"] + list(LETTERS) + [c + "</w>" for c in LETTERS]
    d.mkdir(parents=True)
    (d / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (d / "merges.txt").write_text("#version: 0.2\n")


def write_sd_folder(root: Path) -> Path:
    """A Stable Diffusion folder as diffusers' StableDiffusionPipeline.save_pretrained writes it."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    _tokenizer_files(root / "tok_src")
    tok = CLIPTokenizer(str(root / "tok_src" / "vocab.json"), str(root / "tok_src" / "merges.txt"),
                        model_max_length=77)  # as SD 1.5's tokenizer_config.json
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=37,
                                        num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77,
                                        bos_token_id=0, eos_token_id=1, pad_token_id=1))
    unet = UNet2DConditionModel(sample_size=RES // 8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=8, norm_num_groups=8)
    vae = AutoencoderKL(block_out_channels=(8, 16, 16, 16), layers_per_block=1, norm_num_groups=8, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                          set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    out = root / "sd"
    pipe.save_pretrained(out)
    return out


def write_motion_adapter(root: Path):
    """AnimateDiff's MotionAdapter for the tiny UNet: a diffusers folder and an original-layout file."""
    from diffusers import MotionAdapter
    from safetensors.torch import save_file

    torch.manual_seed(1)
    ma = MotionAdapter(block_out_channels=(32, 64), motion_layers_per_block=1, motion_num_attention_heads=8,
                       motion_norm_num_groups=8, motion_max_seq_length=32, use_motion_mid_block=True)
    with torch.no_grad():  # AnimateDiff's proj_out starts at zero; a released one acts
        for n, p in ma.named_parameters():
            if "proj_out" in n:
                p.normal_(0, 0.05)
    ma.save_pretrained(root / "motion_adapter")
    original = {}  # the inverse of diffusers' convert_animatediff_checkpoint_to_diffusers
    for k, v in ma.state_dict().items():
        if k.endswith("pos_embed.pe"):
            k = k.replace("pos_embed.pe", "attention_blocks.0.pos_encoder.pe")
        k = re.sub(r"motion_modules\.(\d+)\.", r"motion_modules.\1.temporal_transformer.", k)
        k = (k.replace(".norm1", ".norms.0").replace(".norm2", ".norms.1").replace(".norm3", ".ff_norm")
             .replace(".attn1", ".attention_blocks.0").replace(".attn2", ".attention_blocks.1"))
        original[k] = v.contiguous()
    save_file(original, str(root / "mm_tiny.safetensors"))
    return ma


def ldm_checkpoint(unet, vae, text_encoder) -> dict:
    """The original (LDM) single-file layout of an SD pipeline's weights: the inverse of diffusers'
    convert_ldm_unet/vae/clip_checkpoint key mappings, for a test checkpoint."""
    out = {}
    L = unet.config.layers_per_block
    ups = [bool(getattr(b, "attentions", None)) for b in unet.up_blocks]
    top = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
           "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
    res = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"), ("conv2", "out_layers.3"),
           ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection")]
    for k, v in unet.state_dict().items():
        head, _, leaf = k.rpartition(".")
        if head in top:
            key = f"{top[head]}.{leaf}"
        elif m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", k):
            b, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
            key = f"input_blocks.{1 + b * (L + 1) + j}.{0 if kind == 'resnets' else 1}.{rest}"
            if kind == "resnets":
                for a, c in res:
                    key = key.replace(f".{a}.", f".{c}.")
        elif m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", k):
            key = f"input_blocks.{(int(m[1]) + 1) * (L + 1)}.0.op.{m[2]}"
        elif m := re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.*)", k):
            idx = 2 * int(m[2]) if m[1] == "resnets" else 1
            key = f"middle_block.{idx}.{m[3]}"
            if m[1] == "resnets":
                for a, c in res:
                    key = key.replace(f".{a}.", f".{c}.")
        elif m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", k):
            b, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
            key = f"output_blocks.{b * (L + 1) + j}.{0 if kind == 'resnets' else 1}.{rest}"
            if kind == "resnets":
                for a, c in res:
                    key = key.replace(f".{a}.", f".{c}.")
        elif m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", k):
            b = int(m[1])
            key = f"output_blocks.{b * (L + 1) + L}.{2 if ups[b] else 1}.conv.{m[2]}"
        else:
            raise KeyError(k)
        out["model.diffusion_model." + key] = v
    n_up = len(vae.decoder.up_blocks)
    attn = [("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")]
    for k, v in vae.state_dict().items():
        key = k.replace("conv_norm_out", "norm_out")
        key = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", key)
        key = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", key)
        key = re.sub(r"decoder\.up_blocks\.(\d+)\.resnets\.",
                     lambda m: f"decoder.up.{n_up - 1 - int(m[1])}.block.", key)
        key = re.sub(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.",
                     lambda m: f"decoder.up.{n_up - 1 - int(m[1])}.upsample.", key)
        key = re.sub(r"mid_block\.resnets\.(\d+)\.", lambda m: f"mid.block_{int(m[1]) + 1}.", key)
        key = key.replace("conv_shortcut", "nin_shortcut")
        if "mid_block.attentions.0." in key:
            key = key.replace("mid_block.attentions.0.", "mid.attn_1.")
            for a, c in attn:
                key = key.replace(f".{a}.", f".{c}.")
            if v.ndim == 2:
                v = v[:, :, None, None]
        out["first_stage_model." + key] = v
    for k, v in text_encoder.state_dict().items():
        # SD 1.x files hold CLIPTextModel's keys under text_model. (transformers >= 5.6 flattened the module)
        out["cond_stage_model.transformer." + (k if k.startswith("text_model.") else "text_model." + k)] = v
    return {k: v.contiguous() for k, v in out.items()}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from diffusers import ControlNetModel, UNet2DConditionModel

    root = tmp_path_factory.mktemp("weights")
    sd = write_sd_folder(root)
    ma = write_motion_adapter(root)
    torch.manual_seed(2)
    cn = ControlNetModel.from_unet(UNet2DConditionModel.from_pretrained(sd / "unet"), conditioning_channels=3)
    with torch.no_grad():  # a trained ControlNet, not zero convolutions: its output depends on the map
        for m in [cn.controlnet_mid_block, *cn.controlnet_down_blocks, cn.controlnet_cond_embedding.conv_out]:
            m.weight.normal_(0, 0.05)
    cn.save_pretrained(root / "controlnet_rgb")
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import save_file

    pipe = StableDiffusionPipeline.from_pretrained(sd, local_files_only=True, safety_checker=None)
    save_file(ldm_checkpoint(pipe.unet, pipe.vae, pipe.text_encoder), str(root / "sd_tiny.safetensors"))
    return {"single_file": root / "sd_tiny.safetensors", "root": root, "sd": sd,
            "motion_adapter": root / "motion_adapter", "mm_file": root / "mm_tiny.safetensors",
            "motion": ma, "controlnet": root / "controlnet_rgb"}


def tiny_paper_preset(**pretrained) -> "object":
    """The paper preset's recipe (frozen SD backbone, AnimateDiff teacher) at test size: 1 step a stage."""
    p = get_preset("paper")
    stage = dict(batch_size=1, lr=1e-3, checkpoint_every=0, log_every=1, window=2, teacher_samples=1,
                 teacher_steps=2, student_steps=2, degradation="realesrgan")
    # 0 steps stay 0: the paper takes SD's VAE and UNet and AnimateDiff's motion module as they are
    stages = {s: replace(c, **stage, steps=1 if c.steps else 0, frames=4 if s in ("teacher", "lcm", "dmd") else 1)
              for s, c in p.stages.items()}
    return replace(p, name="paper-tiny", data=DataConfig(resolution=RES, clips=2, frames_per_clip=4),
                   stages=stages, pretrained=PretrainedConfig(**{k: str(v) for k, v in pretrained.items()}))


def _parser():
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser


def test_pretrained_backbone_is_frozen_sd_with_its_empty_prompt(weights, tmp_path):
    """--pretrained: UNet and AutoencoderKL from the SD folder, frozen; the CLIP embedding of "" is
    stored with the model, which then loads without the text encoder."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from semcomm_ros.synth import SynthModel
    from semcomm_ros.training.assembly import load_model

    preset = tiny_paper_preset(backbone=weights["sd"])
    model = load_model(preset, tmp_path)
    assert type(model.vae).__name__ == "AutoencoderKL"
    sd_unet = UNet2DConditionModel.from_pretrained(weights["sd"] / "unet")
    assert all(torch.equal(v, model.unet.state_dict()[k]) for k, v in sd_unet.state_dict().items())
    tok = CLIPTokenizer.from_pretrained(weights["sd"] / "tokenizer")
    enc = CLIPTextModel.from_pretrained(weights["sd"] / "text_encoder")
    ids = tok([""], padding="max_length", max_length=tok.model_max_length, return_tensors="pt").input_ids
    expected = enc(ids)[0]
    assert model.null_embedding.shape == (1, 77, 32)
    torch.testing.assert_close(model.null_embedding, expected.detach())
    stored = tmp_path / "model" / "null_embedding.safetensors"
    assert stored.is_file() and json.loads((tmp_path / "model" / "synthesizer.json").read_text())["null_tokens"] == 77
    again = SynthModel.from_pretrained(tmp_path / "model")  # no text encoder involved
    torch.testing.assert_close(again.null_embedding, expected.detach())
    assert not any(p.requires_grad for p in [*model.unet.parameters(), *model.vae.parameters()])


def test_every_stage_runs_from_local_files_and_exports(weights, tmp_path, capsys):
    """control, restoration, teacher (AnimateDiff), lcm, dmd: one step each through the command line,
    then the exported model streams in CausalSynthesizer."""
    from semcomm_ros.synth import CausalSynthesizer

    preset_file = tmp_path / "paper-tiny.json"
    tiny_paper_preset().save(preset_file)
    run = tmp_path / "run"
    common = ["--preset", str(preset_file), "--out", str(run), "--no-progress", "--pretrained", str(weights["sd"]),
              "--motion-adapter", str(weights["motion_adapter"]), "--controlnet", str(weights["controlnet"])]
    # lcm and dmd read AnimateDiff's motion module as the teacher directly (the paper's recipe)
    for stage in ("control", "restoration", "lcm", "dmd"):
        assert cli.run(_parser().parse_args([stage, *common])) == 0, stage
    # the paper's teacher is AnimateDiff's motion module as it is; with steps it is fine-tuned
    assert cli.run(_parser().parse_args(["teacher", *common])) == 0
    assert f"skipped: 0 steps in preset paper-tiny; pretrained: {weights['motion_adapter']}" in capsys.readouterr().out
    assert cli.run(_parser().parse_args(["teacher", *common, "--steps", "1"])) == 0
    stages = json.loads((run / "stages.json").read_text())
    assert set(stages) == {"control", "restoration", "teacher", "lcm", "dmd"}
    assert all(np.isfinite(v) for s in stages.values() for v in s["loss"].values())
    # the lcm student started from the motion adapter: its phi has AnimateDiff's shapes
    assert stages["lcm"]["trainable_params"] == sum(p.numel() for p in weights["motion"].parameters())
    dest = tmp_path / "exported"
    assert cli.run(_parser().parse_args(["export", "--out", str(run), "--to", str(dest)])) == 0
    # the size limit is the shipped model's; an operator station's export elsewhere has none
    from semcomm_ros.training.export import export_model

    with pytest.raises(ValueError, match="MB allowed for shipped weights"):
        export_model(run / "model", tmp_path / "small", max_mb=0.5)
    assert not (tmp_path / "small").exists()
    synth = CausalSynthesizer.from_pretrained(dest, device="cpu")
    assert synth.config.vae_class == "AutoencoderKL" and synth.config.null_tokens == 77
    labels = np.zeros((RES, RES), np.uint8)
    labels[8:20, 8:20] = 3
    low = np.full((RES // 4, RES // 4, 3), 120, np.uint8)
    out = [np.asarray(synth(labels, low, seed=k)) for k in range(3)]
    assert out[0].shape == (RES, RES, 3) and out[0].dtype == np.uint8
    # the GPU check's command, as a CPU dry run on these tiny weights
    from semcomm_ros.cli import main

    assert main(["bench", "synth", "--model", str(dest), "--device", "cpu", "--gpu-frames", "2",
                 "--json", str(tmp_path / "bench.json")]) == 0
    text = capsys.readouterr().out
    assert "T=4, W=3, float32, 2 frames:" in text and "(paper: 5.1 FPS, 6.2 GB on an RTX 4090)" in text
    figures = json.loads((tmp_path / "bench.json").read_text())["paper_point"]
    assert figures["fps"] > 0 and figures["resolution"] == f"{RES}x{RES}"
    # the operator's decoder node takes it as its `model` parameter
    from rosutil import have_interfaces, processes, ros_env, unique_ns, wait_for

    if have_interfaces():
        with processes(tmp_path, ros_env()) as P:
            P.node("decoder", "decoder_node", unique_ns(), {"model": str(dest), "device": "cpu"})
            wait_for(lambda: f"synthesizer {dest} loaded on cpu" in P.log("decoder"), 90,
                     "the decoder node on the exported model", P)


def test_single_file_checkpoint_loads_as_the_folder(weights):
    """One original-layout .safetensors (model.diffusion_model.*, first_stage_model.*,
    cond_stage_model.*) through diffusers' single-file loading = the folder's backbone."""
    from semcomm_ros.training.pretrained import load_backbone

    unet, vae, sched, null = load_backbone(weights["single_file"], weights["sd"])
    ref = load_backbone(weights["sd"])
    for a, b in ((unet, ref[0]), (vae, ref[1])):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    torch.testing.assert_close(null, ref[3])
    assert sched.config.beta_schedule == "scaled_linear" and sched.config.prediction_type == "epsilon"
    # without a config folder diffusers would look its configs up on the hub: offline, a clear error
    with pytest.raises(FileNotFoundError, match="pass --pretrained-config DIR"):
        load_backbone(weights["single_file"])


def test_motion_adapter_file_loads_as_the_folder(weights):
    """An original AnimateDiff motion-module file (mm_*.safetensors keys) = the same MotionAdapter."""
    from diffusers import UNet2DConditionModel

    from semcomm_ros.training.pretrained import load_motion_adapter

    unet = UNet2DConditionModel.from_pretrained(weights["sd"] / "unet")
    a = load_motion_adapter(weights["mm_file"], unet).state_dict()
    b = weights["motion"].state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_rgb_controlnet_gets_the_palette_folded_in_exactly(weights):
    """An RGB ControlNet on the palette-coloured label map == the folded one-hot ControlNet."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    from semcomm_ros.scenes.classes import PALETTE
    from semcomm_ros.synth.semantic_control import one_hot
    from semcomm_ros.training.pretrained import load_controlnet

    unet = UNet2DConditionModel.from_pretrained(weights["sd"] / "unet")
    rgb = ControlNetModel.from_pretrained(weights["controlnet"])
    folded = load_controlnet(weights["controlnet"], unet, 13)
    assert folded.config.conditioning_channels == 13
    labels = torch.from_numpy(np.random.default_rng(0).integers(0, 13, (1, RES, RES)))
    image = (torch.tensor(PALETTE, dtype=torch.float32) / 255.0)[labels].permute(0, 3, 1, 2)
    x, t, emb = torch.randn(1, 4, RES // 8, RES // 8), torch.tensor([500]), torch.randn(1, 77, 32)
    with torch.no_grad():
        ref = rgb(x, t, encoder_hidden_states=emb, controlnet_cond=image, return_dict=False)
        got = folded(x, t, encoder_hidden_states=emb, controlnet_cond=one_hot(labels, 13), return_dict=False)
    for a, b in zip([*ref[0], ref[1]], [*got[0], got[1]]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert float(ref[1].abs().mean()) > 0


def test_wrong_or_incomplete_folders_name_what_is_missing(weights, tmp_path, capsys):
    import shutil

    from semcomm_ros.training.pretrained import load_backbone, load_motion_adapter

    broken = tmp_path / "sd"
    shutil.copytree(weights["sd"], broken)
    shutil.rmtree(broken / "text_encoder")
    with pytest.raises(FileNotFoundError, match=r"missing .*text_encoder"):
        load_backbone(broken)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_backbone(tmp_path / "nowhere")
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="Stable Diffusion folder or a single"):
        load_backbone(tmp_path / "weights.bin")
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(weights["sd"] / "unet")
    (tmp_path / "empty_ma").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_motion_adapter(tmp_path / "empty_ma", unet)
    # the compact backbone's stages make no sense on a pretrained one
    from semcomm_ros.training.pipeline import run_stage

    with pytest.raises(ValueError, match="trains the compact backbone"):
        run_stage("vae", tiny_paper_preset(backbone=weights["sd"]), tmp_path / "v", overrides={"steps": 1})
    # the paper preset without --pretrained says what to pass
    rc = cli.run(_parser().parse_args(["control", "--preset", "paper", "--out", str(tmp_path / "r"),
                                       "--no-progress", "--steps", "1"]))
    assert rc == 1 and "pass --pretrained DIR" in capsys.readouterr().err
