"""The operator's Receiver without DDS: real codec packets of a generated clip pushed in the orders
a lossy link produces (reordered, lost, duplicated, corrupt, restarted)."""

from __future__ import annotations

import numpy as np
import pytest

from semcomm_ros.codec import LowResDecoder, LowResEncoder, SemanticDecoder, SemanticEncoder
from semcomm_ros.receiver import REASON_CORRUPT, REASON_LOSS, Receiver, ReceiverConfig, model_inputs, to_camera
from semcomm_ros.scenes import tabletop_clip

N = 24


@pytest.fixture(scope="module")
def stream():
    """Semantic packets (I-frame every 8) and low-res packets of one clip, plus what plain decoders
    make of them in order: the reference every receiver output is held against."""
    clip = list(tabletop_clip(77, N, 128, 128))
    # 4 kbps at 128x128: the low-res encoder skips frames (sends nothing), as on the real link
    sem, low = SemanticEncoder(period=8), LowResEncoder(128, 128, kbps=4.0)
    sem_p = [sem.encode(lab) for _, lab in clip]
    low_p = [low.encode(rgb) for rgb, _ in clip]
    sd, ld = SemanticDecoder(), LowResDecoder()
    labels = [sd.decode(p) for p in sem_p]
    lowres = [ld.decode(p) if p else None for p in low_p]
    return sem_p, low_p, labels, lowres


def _run(rx, events, step=0.1):
    """events: (kind, index, payload) in arrival order, one every ``step`` s; returns the frames."""
    out, t = [], 0.0
    for kind, k, payload in events:
        (rx.push_semantic if kind == "s" else rx.push_lowres)(k, payload, t, stamp_ns=k)
        out += rx.poll(t)
        t += step
    return out + rx.flush(t)


def _in_order(sem_p, low_p, order=None):
    order = order or list(range(len(sem_p)))
    return [e for k in order for e in (("s", k, sem_p[k]), ("l", k, low_p[k])) if e[2]]


def test_in_order_stream_decodes_every_frame(stream):
    sem_p, low_p, labels, lowres = stream
    rx = Receiver()
    frames = _run(rx, _in_order(sem_p, low_p))
    assert [f.index for f in frames] == list(range(N))
    assert [f.seed_index for f in frames] == list(range(N))
    assert frames[0].restart and not any(f.restart for f in frames[1:])
    for f in frames:
        assert f.labels_new and np.array_equal(f.labels, labels[f.index])
        assert f.stamp_ns == f.index
        # low-res paired by index: this frame's, or the newest before it when the encoder skipped it
        held = max(k for k in range(f.index + 1) if lowres[k] is not None)
        assert f.lowres_new == (held == f.index) and np.array_equal(f.lowres, lowres[held])
    assert rx.counts["lost"] == rx.counts["bad_packets"] == rx.counts["keyframe_requests"] == 0
    assert not rx.take_requests()


def test_reordered_frames_within_the_jitter_window_are_used(stream):
    sem_p, low_p, labels, _ = stream
    order = [0, 1, 2, 4, 3, 5, 7, 6] + list(range(8, N))  # two frames overtaken by one position
    rx = Receiver(ReceiverConfig(jitter_frames=2))
    frames = _run(rx, _in_order(sem_p, low_p, order))
    assert [f.index for f in frames] == list(range(N))  # handed out in index order
    assert all(f.labels_new and np.array_equal(f.labels, labels[f.index]) for f in frames)
    assert rx.counts["reordered"] >= 2 and rx.counts["lost"] == 0 and rx.counts["stale"] == 0
    assert not rx.take_requests()

    # without a jitter buffer the same arrivals lose frames
    rx0 = Receiver(ReceiverConfig(jitter_frames=0))
    _run(rx0, _in_order(sem_p, low_p, order))
    assert rx0.counts["lost"] > 0 and rx0.counts["stale"] > 0


def _is_iframe(packet: bytes) -> bool:
    return packet[0] >> 6 == 0b10  # codec/packet.py: an I-frame's first byte starts 10b


def test_a_loss_beyond_the_window_is_concealed_and_requested(stream):
    sem_p, low_p, labels, _ = stream
    lost = next(k for k in range(1, N - 2) if not _is_iframe(sem_p[k + 1]))
    resume = next(k for k in range(lost + 1, N) if _is_iframe(sem_p[k]))
    events = [e for e in _in_order(sem_p, low_p) if not (e[0] == "s" and e[1] == lost)]
    rx = Receiver(ReceiverConfig(jitter_frames=2))
    frames = _run(rx, events)
    assert [f.index for f in frames] == list(range(N))
    f = frames[lost]
    assert not f.labels_new and f.concealed and np.array_equal(f.labels, labels[lost - 1])  # held
    # P-frames after the loss wait for the next I-frame, holding the last good map; the I-frame resumes
    assert all(not f.labels_new and np.array_equal(f.labels, labels[lost - 1]) for f in frames[lost:resume])
    assert frames[resume].labels_new and np.array_equal(frames[resume].labels, labels[resume])
    assert rx.counts["lost"] == 1 and rx.counts["waiting_for_keyframe"] == resume - lost - 1
    reqs = rx.take_requests()
    assert reqs and reqs[0].semantic and not reqs[0].lowres and reqs[0].reason == REASON_LOSS
    assert reqs[0].last_good_frame_index == lost - 1
    rx.push_semantic(lost, sem_p[lost], 99.0)  # the lost frame, far too late
    assert rx.counts["stale"] == 1


def test_a_corrupt_copy_arriving_first_does_not_evict_the_good_frame(stream):
    sem_p, low_p, labels, _ = stream
    k = next(k for k in range(1, N) if _is_iframe(sem_p[k]))
    bad = bytearray(sem_p[k])  # an I-frame: its CRC-8 catches the damage
    bad[len(bad) // 2] ^= 0x5A
    events = _in_order(sem_p, low_p)
    events.insert(events.index(("s", k, sem_p[k])), ("s", k, bytes(bad)))
    rx = Receiver()
    frames = _run(rx, events)
    assert rx.counts["bad_packets"] == 1 and rx.counts["stale"] == 0 and rx.counts["lost"] == 0
    assert frames[k].labels_new and np.array_equal(frames[k].labels, labels[k])
    assert all(f.labels_new for f in frames)
    reqs = rx.take_requests()
    assert len(reqs) == 1 and reqs[0].reason == REASON_CORRUPT


def test_duplicates_and_stale_packets_are_dropped(stream):
    sem_p, low_p, labels, _ = stream
    events = _in_order(sem_p, low_p)
    events = events[:10] + [("s", 2, sem_p[2]), ("s", 4, sem_p[4])] + events[10:]
    rx = Receiver()
    frames = _run(rx, events)
    assert [f.index for f in frames] == list(range(N))
    assert rx.counts["stale"] == 2 and all(f.labels_new for f in frames)


def test_restarted_encoder_is_followed_with_a_new_stream(stream):
    sem_p, low_p, labels, _ = stream
    rx = Receiver()
    # a stream that has reached frame 100 (indices shifted), then the encoder restarts from 0
    first = [(kind, k + 100, p) for kind, k, p in _in_order(sem_p, low_p)]
    frames = _run(rx, first + _in_order(sem_p, low_p))
    assert rx.counts["restarts"] == 1
    second = [f for f in frames if f.index < 100]
    assert [f.index for f in second] == list(range(N))
    assert second[0].restart and second[0].seed_index == 0  # seeds count from the new start
    assert all(f.labels_new and np.array_equal(f.labels, labels[f.index]) for f in second)


def test_a_stray_packet_with_an_absurd_index_changes_nothing(stream):
    """Garbage whose header agrees with an absurd frame index (far ahead, far behind) is held
    until another packet confirms the jump, which never comes: the stream goes on undisturbed,
    also across a stall longer than the jitter timeout."""
    sem_p, low_p, labels, _ = stream
    first = [(kind, k + 100, p) for kind, k, p in _in_order(sem_p, low_p)]
    half = len(first) // 2
    rx = Receiver()
    frames = _run(rx, first[:half] + [("s", 2**32 - 1, sem_p[3]), ("s", 0, sem_p[0])], step=0.5)
    frames += _run(rx, first[half:])
    assert [f.index - 100 for f in frames] == list(range(N))
    assert all(f.labels_new for f in frames)
    assert rx.counts["restarts"] == rx.counts["lost"] == 0


def test_a_jump_ahead_after_an_outage_is_followed(stream):
    sem_p, low_p, labels, _ = stream
    events = _in_order(sem_p[:8], low_p[:8]) + [(kind, k + 1000, p) for kind, k, p in _in_order(sem_p, low_p)[16:]]
    rx = Receiver()
    frames = _run(rx, events)
    assert frames[-1].index > 1000 and frames[-1].labels_new  # resumed (at the next I-frame)
    assert rx.counts["lost"] >= 1000 - 8 and rx.counts["restarts"] == 0


def test_keyframe_requests_and_warnings_are_throttled(stream):
    rx = Receiver(ReceiverConfig(request_interval_s=0.5, warn_interval_s=2.0))
    for i in range(40):  # 4 s of garbage at 10 per second
        rx.push_semantic(i, b"\xa8garbage", i * 0.1)
        rx.poll(i * 0.1)
    reqs = rx.take_requests()
    assert rx.counts["bad_packets"] == 40
    assert 7 <= len(reqs) <= 9, len(reqs)  # one per 0.5 s
    assert rx.counts["keyframe_requests"] == len(reqs)
    assert rx.counts["warnings"] == 40 and 36 <= rx.counts["warnings_suppressed"] <= 38


def test_lowres_is_paired_by_index_and_a_skipped_one_waits_at_most_lowres_wait(stream):
    sem_p, low_p, labels, lowres = stream
    a = next(k for k in range(1, N) if not low_p[k] and low_p[k - 1])  # skipped by the encoder
    b = next(k for k in range(a + 1, N) if low_p[k])  # the next two it sent
    c = next(k for k in range(b + 1, N) if low_p[k])
    cfg = ReceiverConfig(lowres_wait_s=0.3)
    rx = Receiver(cfg)
    frames = _run(rx, _in_order(sem_p[:a], low_p[:a]), step=0.0)
    assert frames[-1].index == a - 1 and frames[-1].lowres_new
    # nothing comes for low-res frame a: frame a waits for it, then holds frame a-1's
    rx.push_semantic(a, sem_p[a], 1.0)
    assert rx.poll(1.0 + cfg.lowres_wait_s / 2) == []
    (fa,) = rx.poll(1.0 + cfg.lowres_wait_s)
    assert not fa.lowres_new and np.array_equal(fa.lowres, lowres[a - 1])
    # the low-res stream runs ahead of the semantic one: frame b gets low-res frame b, not c
    rx.push_lowres(b, low_p[b], 2.0)
    rx.push_lowres(c, low_p[c], 2.0)
    for k in range(a + 1, b + 1):
        rx.push_semantic(k, sem_p[k], 2.1)
    frames = rx.poll(2.1)
    assert [f.index for f in frames] == list(range(a + 1, b + 1))
    assert all(not f.lowres_new and np.array_equal(f.lowres, lowres[a - 1]) for f in frames[:-1])
    fb = frames[-1]
    assert fb.lowres_new and np.array_equal(fb.lowres, lowres[b]) and not np.array_equal(fb.lowres, lowres[c])


def test_sizes_for_the_model_and_back_to_the_camera(stream):
    _, _, labels, lowres = stream
    lab, low = model_inputs(labels[0], lowres[0], (64, 64), (16, 16))
    assert lab.shape == (64, 64) and low.shape == (16, 16, 3)
    assert set(np.unique(lab)) <= set(np.unique(labels[0]))  # nearest neighbour: ids stay ids
    frame = np.zeros((64, 64, 3), np.uint8)
    assert to_camera(frame, labels[0], lowres[0]).shape == (128, 128, 3)


def test_acknowledgements_while_frames_are_lost_and_no_reset_on_a_short_gap(stream):
    sem_p, low_p, labels, _ = stream
    rx = Receiver(ReceiverConfig(jitter_frames=2, ack_interval_s=0.0))
    _run(rx, _in_order(sem_p, low_p))
    assert not rx.take_acks() and rx.counts["acks"] == 0  # a clean stream: nothing to report
    # a stream predicted from acknowledged frames, two P-frames lost: after the first, the frames
    # already sent extend the lost one until the acknowledgement sent at the loss reaches the
    # encoder; after the second (acknowledgements flowing by then) only the lost frame is missing
    enc, acks = SemanticEncoder(period=32), {}
    enc.predict_from_acked = True
    rx = Receiver(ReceiverConfig(jitter_frames=2, ack_interval_s=0.0))
    out, t = [], 0.0
    for k, (_, lab) in enumerate(tabletop_clip(77, N, 128, 128)):
        for a in rx.take_acks():
            enc.acknowledge(a.frame_index)
            acks[a.frame_index] = a
        if rx.take_requests():
            enc.force_iframe()
        p = enc.encode(lab)
        if k not in (5, 14):
            rx.push_semantic(k, p, t)
        out += rx.poll(t)
        t += 0.1
    out += rx.flush(t)
    held = [f.index for f in out if not f.labels_new]
    assert held[0] == 5 and set(held[:-1]) <= {5, 6, 7, 8} and held[-1] == 14, held
    assert rx.counts["lost"] == 2
    assert acks and all(0 < a.fraction_lost <= 2 / a.window_frames for a in acks.values())
    assert max(acks) >= N - 2


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="jitter_frames"):
        ReceiverConfig(jitter_frames=-1)
    with pytest.raises(ValueError, match="lowres_wait_s"):
        ReceiverConfig(lowres_wait_s=-0.1)


def test_bench_receiver_prints_its_figures(capsys):
    import argparse

    from semcomm_ros.bench import receiver as bench

    p = argparse.ArgumentParser()
    bench.add_arguments(p)
    assert bench.run(p.parse_args(["--frames", "60", "--jitter", "3"])) == 0
    out = capsys.readouterr().out
    assert "jitter_frames=3: 60/60 frames handed out" in out and "gaps over 1 s" in out and "label map held" in out


def test_bench_receiver_runs_the_whole_chain_on_held_out_clips(capsys):
    """The robot's segmenter in front of the codec: its label maps, scored against the exact ones,
    are not the exact ones (a run that sent the exact labels would score ~1 on a clean link)."""
    import argparse
    import re

    from semcomm_ros.bench import receiver as bench

    p = argparse.ArgumentParser()
    bench.add_arguments(p)
    figures = {}
    for robot in ("labels", "ultralytics"):
        args = ["--frames", "20", "--size", "256", "--jitter", "3", "--loss", "0", "--clips", "held-out"]
        assert bench.run(p.parse_args([*args, "--segmenter", robot])) == 0
        out = capsys.readouterr().out
        assert "held-out clips" in out
        figures[robot] = float(re.search(r"exact labels: mIoU ([0-9.]+)", out).group(1))
    # 256x256 with the codec's start-up: labels 0.81, the segmenter's 0.77
    assert figures["ultralytics"] < figures["labels"] - 0.02, figures


def test_a_lost_packet_is_decoded_from_the_next_ones_copy(stream):
    from semcomm_ros.codec.packet import bundle, parse_header

    sem_p, _, labels, _ = stream
    iframe = [parse_header(p).is_iframe for p in sem_p]
    assert iframe[:12] == [True, True, False, False, True, False, False, False, False, False, False, True]
    # each P-frame's packet repeats the P-frame before it, as the Sender does; 6 lost (its copy comes
    # with 7), 8 and 9 lost (9's copy comes with 10, 8's never: 9 and 10 extend it, 11 is an I-frame),
    # the bundle of 20 damaged
    wire = [bundle([sem_p[k - 1]] if k and not iframe[k] and not iframe[k - 1] else [], sem_p[k]) for k in range(N)]
    wire[20] = wire[20][:1] + bytes([wire[20][1] ^ 0xFF]) + wire[20][2:]
    rx = Receiver(ReceiverConfig(jitter_frames=2))
    out, t = [], 0.0
    for k in range(N):
        if k not in (6, 8, 9):
            rx.push_semantic(k, wire[k], t, stamp_ns=k, copy_stamps_ns=(k - 1,) if wire[k] != sem_p[k] else ())
        out += rx.poll(t)
        t += 0.1
    out += rx.flush(t)
    by = {f.index: f for f in out}
    assert [f.index for f in out] == list(range(N))
    fresh = [k for k in range(N) if by[k].labels_new]
    # 20 too: its damaged bundle is refused, the copy in 21's stands in
    assert {6, 11, 20} <= set(fresh) and not {8, 9, 10} & set(fresh)
    assert rx.counts["recovered"] == 2 and rx.counts["stale"] == 0 and rx.counts["duplicates"] == 0
    for k in fresh:
        assert np.array_equal(by[k].labels, labels[k]), k
        assert by[k].stamp_ns == k  # a repaired frame keeps its capture stamp
    assert rx.counts["bad_packets"] == 1, rx.counts  # the damaged bundle: counted, a fresh start asked for
    # a frame whose own packet was lost counts as lost on the link even when its copy arrived
    rx = Receiver(ReceiverConfig(jitter_frames=2))
    for k in range(11):
        if k != 6:
            rx.push_semantic(k, wire[k], 0.1 * k)
    assert rx.counts["recovered"] == 1 and rx.fraction_lost == pytest.approx(1 / 11, abs=0.01)


def test_a_lost_lowres_packet_is_decoded_from_the_next_ones_copy(stream):
    """Low-res packets skip frames, so a copy is placed by the index in its own header."""
    from semcomm_ros.codec.lowres import parse_header as low_header
    from semcomm_ros.codec.packet import bundle

    sem_p, low_p, _, lowres = stream
    sent = [k for k in range(N) if low_p[k]]
    deltas = [k for a, k in zip(sent, sent[1:]) if not low_header(low_p[k])["key"] and not low_header(low_p[a])["key"]]
    assert len(deltas) >= 2
    lost = deltas[0]  # a delta frame whose successor carries it
    prev = {k: a for a, k in zip(sent, sent[1:])}
    after = next(k for k in sent if k > lost)
    wire = dict((k, low_p[k]) for k in sent)
    wire[after] = bundle([low_p[lost]], low_p[after])
    rx = Receiver(ReceiverConfig(jitter_frames=2))
    events = [e for k in range(N) for e in (("s", k, sem_p[k]), ("l", k, wire.get(k, b"")))
              if e[2] and not (e[0] == "l" and e[1] == lost)]
    out = _run(rx, events)
    assert rx.counts["recovered_lowres"] == 1 and prev[lost] < lost
    # the copy arrives with the next low-res packet, after its own frame went out: it keeps the
    # chain, so the next delta frame decodes instead of waiting for a keyframe
    by = {f.index: f for f in out}
    assert by[after].lowres_new and np.array_equal(by[after].lowres, lowres[after])
    assert rx.counts["keyframe_requests"] == 0


def test_on_a_lossy_link_a_hole_is_asked_for_at_once(stream):
    """Once the receiver has seen loss, a missing semantic frame is asked for as soon as a later
    packet shows the hole, not after the jitter buffer's wait (a reordered packet still fills it)."""
    sem_p, *_ = stream
    first, second = 2, 8  # P-frames, each followed by a P-frame (the stream fixture's I/P pattern)
    assert not _is_iframe(sem_p[first + 1]) and not _is_iframe(sem_p[second + 1])
    rx = Receiver(ReceiverConfig(jitter_frames=3, jitter_timeout_s=0.3, request_interval_s=0.0))
    t = 0.0
    for k in range(second + 2):
        if k not in (first, second):
            rx.push_semantic(k, sem_p[k], t)
        rx.poll(t)
        if k == first + 1:
            # a clean link so far: the hole waits out the jitter buffer before anything is asked
            assert not rx.take_requests() and rx.fraction_lost == 0
        if k == second - 1:
            assert rx.take_requests()  # the first hole's, once the jitter buffer gave up on it
        t += 0.1
    reqs = rx.take_requests()  # the second hole, asked 0 s after the packet behind it arrived
    assert rx.fraction_lost > 0 and reqs and {r.last_good_frame_index for r in reqs} == {second - 1}, reqs
    rx.push_semantic(second, sem_p[second], t)  # it was only late: used, nothing lost by asking
    assert [f.index for f in rx.flush(t) if f.labels_new][-2:] == [second, second + 1]


def test_a_copy_that_cannot_decode_asks_nothing_when_its_carrier_does():
    """A recovery P-frame (predicted from the decoder's newest frame) carries a copy of a frame
    that was predicted from a lost one: the copy fails, the carrier decodes, and the receiver,
    in sync again, asks for nothing."""
    from semcomm_ros.codec.packet import bundle

    enc, dec = SemanticEncoder(period=64, profile="tracked"), SemanticDecoder()
    maps = [lab for _, lab in tabletop_clip(78, 8, 128, 128)]
    packets = [enc.encode(maps[k]) for k in range(6)]  # 4 and 5 lost on the link
    assert enc.recover_from(3)
    recovery = enc.encode(maps[6])
    rx = Receiver(ReceiverConfig(jitter_frames=1))
    for k in range(4):
        rx.push_semantic(k, packets[k], 0.1 * k)
        dec.decode(packets[k])
    rx.push_semantic(6, bundle([packets[5]], recovery), 0.7)
    out = rx.poll(0.7) + rx.flush(1.5)
    assert [f.index for f in out if f.labels_new] == [0, 1, 2, 3, 6]
    assert np.array_equal(out[-1].labels, dec.decode(recovery))
    assert rx.counts["waiting_for_keyframe"] == 1 and not rx.take_requests()
