"""``semcomm bench semantic``: rate-distortion of the semantic video codec, like the paper's Fig. 6.

Generated tabletop clips (512x512, 10 fps, 3-8 objects) are encoded and decoded with xi swept over
[4, 24] for Q in {16, 64, 256, 1024} (P = 4) and P in {1, 2, 4, 8} (Q = 256) with the paper
profile, plus the tracked profile; mIoU is the per-frame mean IoU over the classes present in the
original or the decoded map, averaged over all frames; kbps counts every byte of every packet
(1 kbit = 1024 bit, as the paper's bpp conversion). Prints a table, the targets, the speed, and
writes the plot.

Each clip is generated once per run (in the worker that codes it with every configuration);
``--workers`` spreads clips over processes (the machine is shared: default 1).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np

from semcomm_ros.codec.contours import ONE, extract_regions, simplify
from semcomm_ros.codec.packet import parse_header
from semcomm_ros.codec.semantic import PROFILE_DEFAULTS, SemanticDecoder, SemanticEncoder
from semcomm_ros.codec.semantic.intra import quantize_contour
from semcomm_ros.codec.semantic.state import step16
from semcomm_ros.eval.metrics import bpp, kbps, miou
from semcomm_ros.scenes import tabletop_clip
from semcomm_ros.scenes.splits import CODEC_BENCH

XI_FULL = (4.0, 6.0, 8.0, 12.0, 16.0, 24.0)
XI_QUICK = (4.0, 6.0, 12.0, 24.0)
FPS = 10.0


@dataclass(frozen=True)
class Config:
    profile: str
    q: int
    period: int
    xi: float
    slack: float | None = None  # tracked profile: keep_slack = update_slack (None = default)

    @property
    def name(self) -> str:
        slack = self.slack
        if slack is None and self.profile == "tracked":
            slack = PROFILE_DEFAULTS["tracked"]["keep_slack"]
        extra = f" slack={slack:g}" if slack is not None else ""
        return f"{self.profile:<7} Q={self.q:<4d} P={self.period:<2d} xi={self.xi:g}{extra}"


def configs(xis) -> list[Config]:
    out = []
    for q in (16, 64, 256, 1024):
        out += [Config("paper", q, 4, xi) for xi in xis]
    for p in (1, 2, 8):
        out += [Config("paper", 256, p, xi) for xi in xis]
    out += [Config("tracked", 256, 32, xi) for xi in xis]
    out += [Config("tracked", 256, 32, 4.0, slack) for slack in SLACKS]
    return out


SLACKS = (0.06, 0.1, 0.2, 0.26, 0.32)


def _clip(seed: int, frames: int, size: int) -> list[np.ndarray]:
    return [labels for _, labels in tabletop_clip(seed, frames, size, size)]


PAPER_POINT = Config("paper", 256, 4, 6.0)


def _code_clip(job) -> dict:
    seed, frames, size, cfgs = job
    clip = _clip(seed, frames, size)
    out = {}
    for cfg in cfgs:
        kw = {} if cfg.slack is None else {"keep_slack": cfg.slack, "update_slack": cfg.slack}
        enc = SemanticEncoder(xi=cfg.xi, period=cfg.period, q_symbols=cfg.q, profile=cfg.profile, **kw)
        dec = SemanticDecoder()
        bits, payload, miou_sum, i_payload, n_p = 0, 0, 0.0, 0, 0
        bound = _BoundStats() if cfg == PAPER_POINT else None
        for labels in clip:
            before = bound.before(enc) if bound else None
            pkt = enc.encode(labels)
            hdr = parse_header(pkt)
            bits += hdr.bits
            pay = hdr.payload_bits
            payload += pay
            if hdr.is_iframe:
                i_payload += pay
            else:
                n_p += 1
            if bound:
                bound.after(enc, labels, before, hdr.is_iframe)
            miou_sum += miou(dec.decode(pkt), labels)
        out[cfg] = (bits, miou_sum, len(clip), enc.stats["I"], enc.stats["forced_I"], payload, i_payload, n_p)
        if bound:
            out["bound"] = bound
    return out


class _BoundStats:
    """What an ideal coder of the paper's exact scheme would need at the paper's point.

    Per I-frame: the explicit labels (uniform over the declared range 0..L, plus L itself), the
    explicit first points (log2 W + log2 H bits each) and the quantized differences at the
    empirical order-0 entropy of all differences of the run (an oracle model, free of charge);
    per P-frame: the centroid shifts at their empirical order-0 entropy. Counts, model parameters,
    byte alignment and framing cost nothing here, so this is a lower bound for any order-0
    arithmetic coder of this scheme (the paper's)."""

    def __init__(self):
        from collections import Counter

        self.diff_hist, self.v_hist = Counter(), Counter()
        self.i_fixed_bits = 0.0  # labels + first points of all I-frames
        self.n_i = self.n_p = 0

    def __add__(self, other):
        out = _BoundStats()
        for k in ("diff_hist", "v_hist"):
            setattr(out, k, getattr(self, k) + getattr(other, k))
        for k in ("i_fixed_bits", "n_i", "n_p"):
            setattr(out, k, getattr(self, k) + getattr(other, k))
        return out

    @staticmethod
    def before(enc):
        st = enc._mirror._state
        return [list(o) for o in st.offsets] if st is not None else None

    def after(self, enc, labels, before, iframe: bool) -> None:
        import math

        h, w = labels.shape
        if not iframe:
            self.n_p += 1
            for (x0, y0), (x1, y1) in zip(before, enc._mirror._state.offsets):
                self.v_hist.update((x1 - x0, y1 - y0))
            return
        self.n_i += 1
        _, regions = extract_regions(labels)
        if not regions:
            return
        n_labels = max(r.label for r in regions) + 1
        self.i_fixed_bits += 8 + len(regions) * (math.log2(n_labels) + math.log2(w) + math.log2(h))
        step = step16(enc.q_symbols, h, w)
        for r in regions:
            pts = simplify(r.contour, float(enc.xi))
            syms, _ = quantize_contour(pts, (int(pts[0, 0]) * ONE, int(pts[0, 1]) * ONE), step, enc.q_symbols, h, w)
            self.diff_hist.update(syms.ravel().tolist())

    @staticmethod
    def _entropy_bits(hist) -> float:
        n = sum(hist.values())
        p = np.array(list(hist.values()), dtype=np.float64) / max(n, 1)
        return float(-(np.log2(p) * p).sum() * n)

    def report(self, r: dict, n_frames: int, period: int) -> list[str]:
        """Lines comparing the measured paper point with the bounds (bits a frame, kbps at FPS)."""
        k = FPS / 1024.0
        f_i, f_p = 1.0 / period, 1.0 - 1.0 / period
        i_pay = r["i_payload_bits"] / max(r["iframes"], 1)
        p_pay = (r["payload_bits"] - r["i_payload_bits"]) / max(r["pframes"], 1)
        meas = f_i * i_pay + f_p * p_pay
        i_ideal = (self.i_fixed_bits + self._entropy_bits(self.diff_hist)) / max(self.n_i, 1)
        p_ideal = self._entropy_bits(self.v_hist) / max(self.n_p, 1)
        ideal = f_i * i_ideal + f_p * p_ideal
        framing = f_i * 48 + f_p * 8  # this bitstream: I-frame 5 header bytes + CRC-8, P-frame 1 byte
        return [
            f"  paper-scheme bound at Q=256 P={period} xi=6 (every {period}th frame an I-frame, none forced):",
            f"    measured payloads: I-frame {i_pay:.1f} bits, P-frame {p_pay:.1f} bits -> "
            f"{meas:.1f} bits/frame = {meas * k:.3f} kbps with zero framing, "
            f"{(meas + framing) * k:.3f} kbps with this bitstream's framing",
            f"    ideal order-0 coder (oracle entropies, no counts/alignment): I-frame {i_ideal:.1f} bits, "
            f"P-frame {p_ideal:.1f} bits -> {ideal * k:.3f} kbps with zero framing, "
            f"{(ideal + framing) * k:.3f} kbps with this framing, {(ideal + 8) * k:.3f} kbps with one byte a frame",
        ]


def speed(seeds, frames: int, size: int, profile: str, xi: float, period: int) -> tuple[float, float]:
    """Median wall and CPU ms of encode + decode of one frame (single process, one core)."""
    wall, cpu = [], []
    for seed in seeds:
        clip = _clip(seed, frames, size)
        enc = SemanticEncoder(xi=xi, period=period, profile=profile)
        dec = SemanticDecoder()
        for labels in clip:
            t0, c0 = time.perf_counter(), time.process_time()
            dec.decode(enc.encode(labels))
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    return 1e3 * float(np.median(wall)), 1e3 * float(np.median(cpu))


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), dpi=80)

    def curve(ax, sel, label, **kw):
        pts = sorted((results[c]["kbps"], results[c]["miou"]) for c in sel if c in results)
        if pts:
            ax.plot(*zip(*pts), marker="o", ms=3, label=label, **kw)

    cfgs = list(results)
    for q in (16, 64, 256, 1024):
        curve(axes[0], [c for c in cfgs if c.profile == "paper" and c.period == 4 and c.q == q], f"Q={q}")
    axes[0].set_title("paper profile, P=4: effect of Q")
    for p in (1, 2, 4, 8):
        curve(axes[1], [c for c in cfgs if c.profile == "paper" and c.q == 256 and c.period == p], f"P={p}")
    axes[1].set_title("paper profile, Q=256: effect of P")
    curve(axes[2], [c for c in cfgs if c.profile == "paper" and c.q == 256 and c.period == 4], "paper (Q=256, P=4)")
    curve(axes[2], [c for c in cfgs if c.profile == "tracked" and c.slack is None],
          "tracked (Q=256, P=32, slack 0.14), xi swept")
    curve(axes[2], [c for c in cfgs if c.profile == "tracked" and (c.slack is not None or c.xi == 4.0)],
          "tracked, xi=4, slack swept 0.06..0.32", ls="--")
    op = PAPER_POINT
    if op in results:
        axes[2].plot(results[op]["kbps"], results[op]["miou"], "k*", ms=9, label="paper point (xi=6)")
        axes[2].axhline(results[op]["miou"], color="k", lw=0.6, ls=":")
    axes[2].set_title("paper vs tracked profile")
    for ax in axes:
        ax.axhline(0.85, color="grey", lw=0.8, ls="--")
        ax.set_xlabel("rate [kbps] (xi swept 4..24)")
        ax.set_ylabel("mIoU")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[2].axvline(1.0, color="C0", lw=0.8, ls=":")
    axes[2].axvline(0.5, color="C1", lw=0.8, ls=":")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def add_arguments(parser) -> None:
    parser.add_argument("--videos", type=int, default=20, help="number of generated clips (default 20)")
    parser.add_argument("--frames", type=int, default=50, help="frames per clip (default 50)")
    parser.add_argument("--size", type=int, default=512, help="frame side in pixels (default 512)")
    parser.add_argument("--seed", type=int, default=CODEC_BENCH.start, help="seed of the first clip")
    parser.add_argument("--workers", type=int, default=1, help="processes (default 1: the machine is shared)")
    parser.add_argument("--quick", action="store_true", help="small run: 4 clips x 20 frames, 4 values of xi")
    parser.add_argument("--plot", default="docs/img/semantic_rd.png", help="PNG to write ('' = none)")
    parser.add_argument("--json", default="", help="also write the results as JSON here")


def run(args) -> int:
    videos, frames, xis = args.videos, args.frames, XI_FULL
    if args.quick:
        videos, frames, xis = min(videos, 4), min(frames, 20), XI_QUICK
    cfgs = configs(xis)
    jobs = [(args.seed + i, frames, args.size, cfgs) for i in range(videos)]
    print(f"semantic codec rate-distortion: {videos} clips x {frames} frames, {args.size}x{args.size}, "
          f"{FPS:g} fps, {len(cfgs)} configurations, {args.workers} worker(s)")
    t0 = time.perf_counter()
    acc: dict = {}
    bound = None
    if args.workers > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(args.workers) as pool:
            parts = list(pool.imap_unordered(_code_clip, jobs))
    else:
        parts = [_code_clip(j) for j in jobs]
    for part in parts:
        b = part.pop("bound", None)
        if b is not None:
            bound = b if bound is None else bound + b
        for cfg, vals in part.items():
            a = acc.setdefault(cfg, [0, 0.0, 0, 0, 0, 0, 0, 0])
            for i, v in enumerate(vals):
                a[i] += v
    results = {}
    for cfg in cfgs:
        bits, msum, n, n_i, forced, payload, i_payload, n_p = acc[cfg]
        rate = kbps(bits, n, FPS)
        results[cfg] = {
            "kbps": rate,
            "payload_kbps": kbps(payload, n, FPS),
            "bpp": bpp(rate, args.size, args.size, FPS),
            "bits_per_frame": bits / n,
            "miou": msum / n,
            "iframes": n_i,
            "forced_iframes": forced,
            "frames": n,
            "pframes": n_p,
            "payload_bits": payload,
            "i_payload_bits": i_payload,
        }
    print(f"coded in {time.perf_counter() - t0:.0f} s\n")
    print("kbps: every byte of every packet; payload: without the framing (header, checksum)")
    print(f"{'configuration':<44} {'kbps':>7} {'payload':>7} {'bpp':>9} {'bits/frame':>10} {'mIoU':>6} "
          f"{'I':>5} {'forced I':>8}")
    for cfg in cfgs:
        r = results[cfg]
        print(f"{cfg.name:<44} {r['kbps']:7.3f} {r['payload_kbps']:7.3f} {r['bpp']:9.6f} {r['bits_per_frame']:10.1f} "
              f"{r['miou']:6.3f} {r['iframes']:5d} {r['forced_iframes']:8d}")

    def best(sel, floor):
        ok = [c for c in sel if results[c]["miou"] >= floor]
        return min(ok, key=lambda c: results[c]["kbps"]) if ok else None

    print("\ntargets")
    op = PAPER_POINT
    same = 0.85
    if op in results:
        r = results[op]
        same = r["miou"]
        ok = r["miou"] >= 0.85 and r["kbps"] <= 1.0
        print(f"  paper operating point Q=256 P=4 xi=6: {r['kbps']:.3f} kbps, mIoU {r['miou']:.3f} "
              f"(target mIoU >= 0.85 at <= 1.0 kbps: {'MET' if ok else 'NOT MET'})")
        if bound is not None:
            for line in bound.report(r, r["frames"], op.period):
                print(line)
    for prof in ("paper", "tracked"):
        b = best([c for c in cfgs if c.profile == prof], 0.85)
        if b is None:
            print(f"  {prof}: no configuration reaches mIoU 0.85")
        else:
            print(f"  {prof}: lowest rate at mIoU >= 0.85: {results[b]['kbps']:.3f} kbps "
                  f"({results[b]['payload_kbps']:.3f} kbps payload; mIoU {results[b]['miou']:.3f}, {b.name.strip()})")
    default = Config("tracked", 256, 32, 4.0)
    if default in results:
        r = results[default]
        ok = r["miou"] >= same and r["kbps"] <= 0.5
        print(f"  tracked default (xi=4 P=32 slack=0.14): {r['kbps']:.3f} kbps, mIoU {r['miou']:.3f} (target: the "
              f"paper point's mIoU {same:.3f} at <= 0.5 kbps: {'MET' if ok else 'NOT MET'})")
    bt = best([c for c in cfgs if c.profile == "tracked"], same)
    if bt is not None:
        print(f"  tracked: lowest rate at mIoU >= {same:.3f}: {results[bt]['kbps']:.3f} kbps "
              f"(mIoU {results[bt]['miou']:.3f}, {bt.name.strip()})")

    print("\nspeed (encode + decode of one frame, median, one process)")
    sp_seeds = [args.seed + i for i in range(min(videos, 2))]
    for prof, xi, period in (("paper", 6.0, 4), ("tracked", 4.0, 32)):
        wall, cpu = speed(sp_seeds, frames, args.size, prof, xi, period)
        print(f"  {prof:<7} xi={xi:g} P={period}: {wall:.2f} ms wall, {cpu:.2f} ms CPU "
              f"(target <= 10 ms: {'MET' if cpu <= 10 else 'NOT MET'})")
    if args.plot:
        import os

        os.makedirs(os.path.dirname(args.plot) or ".", exist_ok=True)
        plot(results, args.plot)
        print(f"\nplot: {args.plot} ({os.path.getsize(args.plot) // 1024} KB)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{"profile": c.profile, "q": c.q, "period": c.period, "xi": c.xi, "slack": c.slack, **r}
                       for c, r in results.items()], f, indent=1)
    return 0
