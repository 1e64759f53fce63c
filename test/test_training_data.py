"""Training data and command line: degradations as the decoder sees them, batches, CLI errors."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from semcomm_ros.training.config import STAGES, Preset, get_preset
from semcomm_ros.training.data import BatchSampler, build_clipset, codec_degrade, realesrgan_degrade, render_clip


def test_codec_degradation_is_the_real_lowres_stream():
    import cv2

    from semcomm_ros.codec import LowResDecoder, LowResEncoder

    # the robot codes camera frames (here 256x256); the synthesizer (64x64) gets them area-averaged
    # to 16x16, as system.synthesize hands them over
    cfg = replace(get_preset("tabletop").data, resolution=64, camera_resolution=256)
    cam, _ = render_clip(cfg.first_seed, 6, 256)  # the first training clip
    low = codec_degrade(cam, cfg)
    assert low.shape == (6, 16, 16, 3) and low.dtype == np.uint8
    enc, dec = LowResEncoder(256, 256, fps=10, scale=4, kbps=1.0), LowResDecoder()
    first = dec.decode(enc.encode(cam[0]))
    np.testing.assert_array_equal(low[0], cv2.resize(first, (16, 16), interpolation=cv2.INTER_AREA))


def test_training_frames_labels_and_lowres_show_the_same_instant():
    """A scene rendered at the model's size is another video than the camera's (its motion drifts
    apart within a second): frames and labels are the camera's render brought down, as the
    operator's synthesizer meets them, so that the low-res frame and the decoded label maps, made
    from the camera's frames, match the target frame."""
    import cv2

    cfg = replace(get_preset("tabletop").data, resolution=64, camera_resolution=256, clips=1, frames_per_clip=12)
    clips = build_clipset(cfg, degradation="codec", cache=False, progress=False)
    cam, cam_labels = render_clip(cfg.first_seed, 12, 256)
    for k in (0, 11):
        np.testing.assert_array_equal(clips.frames[0, k], cv2.resize(cam[k], (64, 64), interpolation=cv2.INTER_AREA))
        np.testing.assert_array_equal(clips.labels[0, k],
                                      cv2.resize(cam_labels[k], (64, 64), interpolation=cv2.INTER_NEAREST))


def test_realesrgan_degradation_shrinks_and_changes_the_frame():
    rgb, _ = render_clip(100_001, 1, 64)
    low = realesrgan_degrade(rgb[0], 4, np.random.default_rng(0))
    assert low.shape == (16, 16, 3) and low.dtype == np.uint8
    down = rgb[0].reshape(16, 4, 16, 4, 3).mean((1, 3))
    assert np.abs(low.astype(float) - down).mean() > 1.0


def test_batches_are_a_function_of_the_step_and_flip_consistently():
    preset = get_preset("tiny")
    clips = build_clipset(preset.data, degradation="realesrgan", cache=False, progress=False)
    s = BatchSampler(clips, 3, frames=2, seed=7)
    a, b = s.batch(5), s.batch(5)
    for k in ("frames", "labels", "lowres", "flip"):
        np.testing.assert_array_equal(a[k], b[k])
    assert a["frames"].shape == (3, 2, 32, 32, 3) and a["labels"].shape == (3, 2, 32, 32)
    # labels flip with their frames: the table (0) is where the frame shows the table colour
    c, st, fl = a["clip"][0], a["start"][0], a["flip"][0]
    lab = clips.labels[c, st]
    lab = lab[:, ::-1] if fl & 1 else lab
    lab = lab[::-1] if fl & 2 else lab
    np.testing.assert_array_equal(a["labels"][0, 0], lab)
    with pytest.raises(ValueError, match="frames per sample"):
        BatchSampler(clips, 1, frames=99)


def test_presets_round_trip_and_cover_every_stage(tmp_path):
    for name in ("paper", "tabletop", "tiny"):
        p = get_preset(name)
        p.save(tmp_path / f"{name}.json")
        q = Preset.load(tmp_path / f"{name}.json")
        assert q.to_dict() == p.to_dict()
    tab = get_preset("tabletop")
    assert set(tab.stages) == set(STAGES)
    assert all(s.weight_decay == 1e-2 and s.grad_clip == 1.0 for s in tab.stages.values())
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("nope")


def test_cli_reports_bad_options(tmp_path, capsys):
    import argparse

    from semcomm_ros.training import cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert cli.run(parser.parse_args(["control", "--preset", "nope"])) == 2
    assert "unknown preset" in capsys.readouterr().err
    assert cli.run(parser.parse_args(["control", "--preset", "tiny", "--steps", "0"])) == 2
    rc = cli.run(parser.parse_args(["control", "--preset", "tiny", "--out", str(tmp_path), "--no-progress"]))
    assert rc == 1 and "run `semcomm train" in capsys.readouterr().err
    rc = cli.run(parser.parse_args(["export", "--out", str(tmp_path), "--to", str(tmp_path / "x")]))
    assert rc == 1 and "synthesizer config" in capsys.readouterr().err
    # a stage the preset gives 0 steps (tabletop's dmd) is skipped with a word, not run for nothing
    rc = cli.run(parser.parse_args(["dmd", "--preset", "tabletop", "--out", str(tmp_path), "--no-progress"]))
    assert rc == 0 and "skipped: 0 steps in preset tabletop (--steps N runs it)" in capsys.readouterr().out
