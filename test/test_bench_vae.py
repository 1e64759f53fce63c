"""``semcomm bench vae`` (issue 22, measure first) on tiny random autoencoders: it runs, prints a row per
candidate and the clean reference, and reads a ``semcomm train vae`` checkpoint as the VAE it holds."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace

import torch

from semcomm_ros.bench import vae as bench
from semcomm_ros.training.backbone import VAEStage, build_vae
from semcomm_ros.training.config import get_preset
from semcomm_ros.training.data import BatchSampler, build_clipset
from semcomm_ros.training.trainer import Trainer


def test_bench_vae_scores_a_vae_directory_and_a_training_checkpoint(tmp_path, capsys):
    torch.set_num_threads(1)
    preset = get_preset("tiny")
    torch.manual_seed(0)
    build_vae(preset.backbone).save_pretrained(tmp_path / "tiny_vae")
    # one training step of the vae stage, laid out as `semcomm train vae --out run` writes it
    (tmp_path / "run").mkdir()
    preset.save(tmp_path / "run" / "preset.json")
    clips = build_clipset(preset.data, degradation="realesrgan", cache=False, progress=False)
    cfg = replace(preset.stage("vae"), steps=1, checkpoint_every=1)
    tr = Trainer(VAEStage(preset.backbone), cfg, tmp_path / "run" / "vae", BatchSampler(clips, 2, seed=0).batch,
                 progress=False, cpu=True)
    tr.run()
    ckpt = tr.checkpoints()[-1]
    loaded = bench.load_candidate(str(ckpt))
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in tr.unwrap().vae.state_dict().items())

    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    out = tmp_path / "bench.json"
    args = parser.parse_args([str(tmp_path / "tiny_vae"), f"{ckpt}@64", "--size", "32", "--clips", "1",
                              "--frames", "2", "--threads", "1", "--json", str(out)])
    assert bench.run(args) == 0
    printed = capsys.readouterr().out
    rows = {(r["candidate"], r["size"]): r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {("clean@32", 32), ("clean@64", 64), (str(tmp_path / "tiny_vae"), 32), (str(ckpt), 64)}
    assert rows[str(tmp_path / "tiny_vae"), 32]["latent"] == "8x4x4" and rows[str(ckpt), 64]["latent"] == "8x8x8"
    for r in rows.values():
        assert 0.0 <= r["miou"] <= 1.0 and 5.0 < r["psnr"] < 60.0
        assert r["candidate"][-44:] in printed
        if "latent" in r:
            assert r["ms_per_frame"] > 0 and math.isfinite(r["psnr_input"])
            # an untrained autoencoder draws less than the clean frames at its size
            assert r["miou"] <= rows[f"clean@{r['size']}", r["size"]]["miou"] + 1e-9
