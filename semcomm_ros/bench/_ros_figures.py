"""``semcomm bench ros``'s figures: what the listener recorded, turned into the numbers the docs
quote, and the lines the benchmark prints."""

from __future__ import annotations

import json

import numpy as np

from semcomm_ros.bench.receiver import explain_gaps as explain


def pct(values, q):
    values = [v for v in values if np.isfinite(v)]  # NaN: a frame without a capture stamp
    return float(np.percentile(values, q)) if len(values) else float("nan")


# -- plain run ------------------------------------------------------------------------------------
def plain_figures(stats, diags, args, model: str, rss: dict, problems: dict) -> dict:
    """``stats``: the encoder's LinkStats, ``diags`` (arrival, DecoderStats), both of the measured window."""
    s, d = stats, diags
    frames = s[-1].frames - s[0].frames
    achieved = (s[-1].bits - s[0].bits) / (frames / args.fps) / 1000.0 if frames else float("nan")
    return {
        "frames_encoded": frames, "encoder_hz": frames / args.duration, "target_kbps": args.target_kbps,
        "achieved_kbps": achieved, "rss_mb": rss, "shutdown_problems": problems,
        "latency_decode_ms_p50_p95": [pct([m.latency_decode_ms for _, m in d], q) for q in (50, 95)],
        "latency_total_ms_p50_p95": [pct([m.latency_total_ms for _, m in d], q) for q in (50, 95)],
        "synth_ms_p50": pct([m.synth_ms for _, m in d], 50),
        "decoder_fps": (len(d) - 1) / (d[-1][0] - d[0][0]),
        "decoder_device": d[-1][1].device, "synthesizer": model,
    }


def print_plain(fig: dict, args) -> None:
    model, problems = fig["synthesizer"], fig["shutdown_problems"]
    print(f"[bench ros] over {args.duration:.0f} s ({fig['frames_encoded']} frames): target {args.target_kbps:.2f} "
          f"kbps, achieved {fig['achieved_kbps']:.3f} kbps; latency camera -> decoded p50/p95 "
          f"{'/'.join(f'{v:.0f}' for v in fig['latency_decode_ms_p50_p95'])} ms, -> synthesized "
          f"{'/'.join(f'{v:.0f}' for v in fig['latency_total_ms_p50_p95'])} ms ({model}, {fig['decoder_device']}, "
          f"synthesizer {fig['synth_ms_p50']:.0f} ms/frame); decoder {fig['decoder_fps']:.2f} FPS")
    print(f"  robot side: {fig['encoder_hz']:.2f} frames/s encoded of a {args.fps:g} Hz camera; RSS MB "
          f"{json.dumps(fig['rss_mb'])}; clean shutdown (SIGINT): {'yes' if not problems else problems}")


# -- soak -----------------------------------------------------------------------------------------
def windows(stats, t0, t_end, window_s, fps, encoder_starts=()):
    """Achieved kbps per window from the encoder's cumulative bit counter (a restarted encoder
    starts it again: only increases within one encoder's life count), with the budget in force
    (its mean over the window's frames);
    ``encoder_start`` marks a window that overlaps the first ``window_s`` of an encoder's life (its
    first I-frame and keyframe are sized for a whole window from its start, which straddles two
    windows unless it starts on an edge)."""
    out = []
    edges = np.arange(t0, t_end - 0.5 * window_s + 1e-9, window_s)
    for a in edges:
        b = min(a + window_s, t_end)
        bits, prev, targets = 0, None, []
        for t, m in stats:
            if t < a or t >= b:
                continue
            if prev is not None and m.bits >= prev:
                bits += m.bits - prev
            prev = m.bits
            targets.append(m.target_kbps)
        out.append({"from_s": round(a - t0, 1), "to_s": round(b - t0, 1), "kbps": round(bits / (b - a) / 1000.0, 3),
                    # the mean of the per-frame budget: it moves within a window under congestion
                    "budget_kbps": round(float(np.mean(targets)), 3) if targets else float("nan"),
                    # a cut within the window reaches the coded rate only over the next frames
                    "budget_max_kbps": round(float(np.max(targets)), 3) if targets else float("nan"),
                    "encoder_start": any(u < b and u + window_s > a for u in encoder_starts)})
    return out


def output_gaps(times, t0, t_end, restarts):
    """Frames, rate and the distribution of the gaps between outputs, restarts left out."""
    times = np.asarray(times)
    gaps, at = (np.diff(times), times[1:]) if len(times) > 1 else (np.array([]), np.array([]))
    keep = [(g, t) for g, t in zip(gaps, at) if not any(a <= t <= b + 0.5 for a, b in restarts)]
    edges = [0, 0.25, 0.5, 1.0, 2.0, 5.0, np.inf]
    return {"frames": int(len(times)), "fps": round(len(times) / (t_end - t0), 2),
            "gaps_s_histogram": {f"{a}-{b}": int(sum(a <= g < b for g, _ in keep))
                                 for a, b in zip(edges[:-1], edges[1:])},
            "gap_max_s": round(float(max(g for g, _ in keep)), 2) if keep else None,
            "gaps_over_1s_at_s": [round(float(t - t0), 1) for g, t in keep if g >= 1.0]}


def explain_gaps(labels, sent, arrived, restarts, garbage=()) -> dict:
    """``bench.receiver.explain_gaps`` (the offline bench's rule) on the live chain: ``labels``
    [(arrival monotonic, arrival wall ns, capture stamp ns)] of the decoded label maps, ``sent``
    capture stamp -> (frame index, frame type, resynchronises) as the encoder published them (a restarted encoder
    numbers from 0 again: positions come from the stamps' order), ``arrived`` the stamps the link
    delivered; gaps ending in a restart (monotonic spans) are left out as ``output_gaps`` leaves them,
    and an unexplained gap that overlaps a ``garbage`` span says so."""
    stamps = sorted(sent)
    position = {u: k for k, u in enumerate(stamps)}
    decoded = [(t, position.get(stamp), (wall - stamp) / 1e9) for t, wall, stamp in labels]
    why = explain(decoded, lambda p: sent[stamps[p]][2], lambda p: stamps[p] in arrived,
                  lambda p: stamps[p] / 1e9, skip=lambda ta, tb: any(a <= tb <= b + 0.5 for a, b in restarts))
    for u in why["unexplained"]:
        u["during_garbage"] = any(a <= u["at"] + u["gap_s"] and u["at"] <= b for a, b in garbage)
    return why


def soak_figures(ear, t0, t_end, restarts, garbage_span, narrow, window_s, fps, encoder_starts) -> dict:
    """The soak's figures from what the listener ``ear`` recorded between ``t0`` and ``t_end``
    (monotonic): ``restarts`` the spans after each kill -9 left out of the gaps, ``garbage_span``
    when garbage went out, ``narrow`` (from, to) the link at half rate, ``encoder_starts`` when an
    encoder started after t0."""
    fig = {}
    d = [(t, m) for t, m in ear.diags if t0 <= t <= t_end]
    s = [(t, m) for t, m in ear.stats if t0 <= t <= t_end]
    labels = [x for x in ear.labels if t0 <= x[0] <= t_end]
    fig["output"] = {"decoded_labels": output_gaps([x[0] for x in labels], t0, t_end, restarts),
                     "synthesized": output_gaps([t for t, _ in d], t0, t_end, restarts)}
    why = explain_gaps(labels, ear.sent, ear.arrived, restarts, [garbage_span])
    rec = why["recoveries"]
    fig["output"]["decoded_labels"]["over_1s_explained"] = {
        "codec_recoveries": len(rec), "unexplained": len(why["unexplained"]),
        "unexplained_at_s": [dict(u, at=round(u["at"] - t0, 1)) for u in why["unexplained"]],
        "recovery_median_s": {k: round(float(np.median([r[k] for r in rec])), 2) if rec else None
                              for k in ("gap_s", "to_iframe_s", "iframe_to_received_s")}}
    t_narrow, t_back = narrow
    lat_d = [m.latency_decode_ms for t, m in d if not (t_narrow <= t <= t_back + 10)]
    lat_s = [m.latency_total_ms for t, m in d if not (t_narrow <= t <= t_back + 10)]
    fig["latency_ms"] = {"camera_to_decoded_p50_p95": [round(pct(lat_d, q), 1) for q in (50, 95)],
                         "camera_to_synthesized_p50_p95": [round(pct(lat_s, q), 1) for q in (50, 95)],
                         "synth_ms_p50": round(pct([m.synth_ms for _, m in d], 50), 1)}
    narrowed = [m.latency_decode_ms for t, m in d if t_narrow <= t <= t_back and np.isfinite(m.latency_decode_ms)]
    after = [(t, m.latency_decode_ms) for t, m in d if t > t_back and np.isfinite(m.latency_decode_ms)]
    recovered = next((t - t_back for i, (t, v) in enumerate(after) if all(w < 1000 for _, w in after[i:i + 10])), None)
    fig["congestion"] = {"latency_ms_max_while_narrow": round(max(narrowed), 1) if narrowed else None,
                         "latency_under_1s_after_recovery_s": None if recovered is None else round(recovered, 2)}
    lives = [m for _, m in d]
    fig["decoder"] = {k: int(sum(max(getattr(a, k) - getattr(b, k), 0) for a, b in zip(lives[1:], lives[:-1])
                                 if getattr(a, k) >= getattr(b, k)))
                      for k in ("lost", "stale", "reordered", "bad_packets", "concealed", "keyframe_requests",
                                "warnings", "warnings_suppressed")}
    enc = [m for _, m in s]
    published = int(sum(max(a.frames - b.frames, 0) for a, b in zip(enc[1:], enc[:-1])))
    fig["encoder"] = {"frames_published": published, "hz": round(published / (t_end - t0), 2),
                      "keyframe_requests_received": int(sum(max(a.keyframe_requests - b.keyframe_requests, 0)
                                                            for a, b in zip(enc[1:], enc[:-1])))}
    rx = [m for t, m in ear.rx if t0 <= t <= t_end]
    fig["link"] = {"dropped": int(rx[-1].dropped) if rx else None, "delivered": int(rx[-1].frames) if rx else None}
    fig["windows"] = windows(s, t0, t_end, window_s, fps, encoder_starts)
    return fig


def print_soak(fig) -> None:
    ev, o, lat = fig["events"], fig["output"], fig["latency_ms"]
    print(f"[bench ros soak] {fig['minutes']:g} min:")
    print(f"  encoder: {fig['encoder']['frames_published']} frames published ({fig['encoder']['hz']} /s, "
          f"restart included), "
          f"{fig['encoder']['keyframe_requests_received']} keyframe requests received; link dropped "
          f"{fig['link']['dropped']}, delivered {fig['link']['delivered']} packets")
    print(f"  decoder: {json.dumps(fig['decoder'])}")
    for name, what in (("decoded_labels", "decoded label maps (link + codecs)"),
                       ("synthesized", "synthesized frames (diagnostics)")):
        g = o[name]
        print(f"  {what}: {g['frames']} ({g['fps']} /s); gaps (s) {json.dumps(g['gaps_s_histogram'])}, longest "
              f"{g['gap_max_s']} s (restarts excluded); gaps >= 1 s at {g['gaps_over_1s_at_s']} s")
    x = o["decoded_labels"]["over_1s_explained"]
    m = x["recovery_median_s"]
    print(f"  label-map gaps >= 1 s: {x['codec_recoveries']} codec recoveries (a semantic frame lost on the link, the "
          f"gap ends on an I-frame or a recovery P-frame; median {m['gap_s']} s = first loss -> I-frame captured "
          f"{m['to_iframe_s']} s + "
          f"I-frame captured -> received {m['iframe_to_received_s']} s), {x['unexplained']} unexplained"
          + (f" ({sum(u.get('during_garbage', False) for u in x['unexplained_at_s'])} during the garbage): "
             f"{x['unexplained_at_s'][:8]}" if x["unexplained"] else ""))
    print(f"  latency camera -> decoded p50/p95 {lat['camera_to_decoded_p50_p95'][0]:.0f}/"
          f"{lat['camera_to_decoded_p50_p95'][1]:.0f} ms, -> synthesized "
          f"{lat['camera_to_synthesized_p50_p95'][0]:.0f}/"
          f"{lat['camera_to_synthesized_p50_p95'][1]:.0f} ms (synthesizer {lat['synth_ms_p50']:.0f} ms/frame, "
          f"{fig['synthesizer']})")
    g = ev.get("garbage", {})
    print(f"  garbage: {g.get('messages')} messages ({g.get('distinct')} distinct) on the decoder's inputs, "
          f"{g.get('refused_as_bad')} refused as bad "
          f"packets, decoder alive: {g.get('decoder_alive')}")
    if ev.get("encoder_stuck"):
        print(f"  encoder restart: {ev['encoder_stuck']}")
    print(f"  restarts (kill -9 -> frames again): decoder {ev.get('decoder_restart_s')} s (label maps "
          f"{ev.get('decoder_restart_labels_s')} s, synthesized {ev.get('decoder_restart_synth_s')} s), encoder "
          f"{ev.get('encoder_restart_s')} s")
    c = fig["congestion"]
    print(f"  link at half rate {ev['link_narrowed']['from_s']}-{ev['link_narrowed']['to_s']} s: latency max "
          f"{c['latency_ms_max_while_narrow']} ms; under 1 s again {c['latency_under_1s_after_recovery_s']} s after "
          f"the link recovered")
    print("  achieved kbps per window (budget in force; target change at 0.5 T):")
    for w in fig["windows"]:
        print(f"    {w['from_s']:6.0f}-{w['to_s']:<6.0f} s  {w['kbps']:.3f} kbps  (budget {w['budget_kbps']:.2f})"
              + ("  encoder restarted in it" if w["encoder_start"] else ""))
    print(f"  RSS MB start: {json.dumps(fig['rss_start_mb'])}")
    print(f"  RSS MB end:   {json.dumps(fig['rss_end_mb'])}")
    print(f"  clean shutdown (SIGINT): {'yes' if not fig['shutdown_problems'] else fig['shutdown_problems']}")
