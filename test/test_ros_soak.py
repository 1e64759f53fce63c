"""One-minute version of ``semcomm bench ros --soak`` (the ten-minute figures are in docs/ros.md):
the five nodes as processes, 2 kbps with 10 % loss, 5 % reordering, 200 ms; garbage on the
decoder's inputs, kill -9 of decoder and encoder, a target change and the link at half rate for a
while. Small frames and the tiny synthesizer; the assertions are on what the benchmark measured."""

from __future__ import annotations

import argparse
import json

import pytest

from rosutil import have_interfaces, ros_env

pytestmark = pytest.mark.skipif(not have_interfaces(),
                                reason="msg/ interfaces not built: run scripts/build_interfaces.sh")


def test_one_minute_soak(tmp_path, monkeypatch, capsys):
    from semcomm_ros.bench import ros

    for k, v in ros_env().items():
        if k.startswith("ROS_") or k == "RMW_IMPLEMENTATION":
            monkeypatch.setenv(k, v)
    p = argparse.ArgumentParser()
    ros.add_arguments(p)
    out = tmp_path / "soak.json"
    args = p.parse_args(["--soak", "--minutes", "1", "--window-s", "10", "--model", "tiny", "--size", "128",
                         "--json", str(out)])
    assert ros.run(args) == 0
    fig = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert "achieved kbps per window" in printed and "RSS MB end" in printed
    ev = fig["events"]
    assert ev["garbage"]["decoder_alive"] and ev["garbage"]["refused_as_bad"] >= 20
    assert ev["decoder_restart_s"] is not None and ev["encoder_restart_s"] is not None
    assert all(r["successful"] for r in ev["target_change"]["results"]), ev["target_change"]
    assert not fig["dead_before_stop"] and not fig["shutdown_problems"], fig["shutdown_problems"]
    # every node measured at start and end; no node but the decoder (the synthesizer) imports torch
    for when in ("rss_start_mb", "rss_end_mb"):
        assert set(fig[when]) == set(ros.NODES)
        assert all(fig[when][n] < 400 for n in ros.NODES if n != "decoder"), fig[when]
    assert fig["output"]["synthesized"]["frames"] >= 20 and fig["decoder"]["lost"] > 0
    # label maps keep decoding through the loss (a lost P-frame waits for the next I-frame, asked
    # for at once and sent within min_refresh_s: 4 of 10 frames/s measured, restarts included)
    assert fig["output"]["decoded_labels"]["fps"] > 2.0, fig["output"]
    assert fig["encoder"]["keyframe_requests_received"] > 0
    # every gap of 1 s or more between label maps is explained or listed: a codec recovery (a
    # frame lost, the gap ends on an I-frame) or not
    hist = fig["output"]["decoded_labels"]["gaps_s_histogram"]
    why = fig["output"]["decoded_labels"]["over_1s_explained"]
    assert why["codec_recoveries"] + why["unexplained"] == hist["1.0-2.0"] + hist["2.0-5.0"] + hist["5.0-inf"], why
    # the budget in force holds in every window but those within 10 s of an encoder's start (its
    # first I-frame and keyframe are sized for a 10 s window: the first window, and the restart's,
    # which straddles two windows unless it starts on an edge); a
    # congestion cut inside a window is held to the window's highest budget, as the coded rate
    # follows a cut only over the next frames
    for w in fig["windows"][1:]:
        assert w["encoder_start"] or w["kbps"] <= 1.1 * w["budget_max_kbps"], fig["windows"]
    # the target change at 30 s: 1.8 before, at most 1.2 after (less while the link is narrow)
    assert fig["windows"][0]["budget_kbps"] > 1.2
    after = [w for w in fig["windows"] if w["from_s"] > ev["target_change"]["at_s"]]
    assert after and all(w["budget_kbps"] <= 1.2 + 1e-6 for w in after), fig["windows"]
    # the link back at full rate: latency under 1 s within 10 s
    rec = fig["congestion"]["latency_under_1s_after_recovery_s"]
    assert rec is not None and rec <= 10.0, fig["congestion"]
