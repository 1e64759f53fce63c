"""``semcomm bench receiver``: the whole link offline, in simulated time: the robot's Sender (rate
controller, congestion control, keyframe requests), a lossy reordering link and the operator's
Receiver, as the five nodes run them but without ROS, DDS or a busy CPU.

``system.Session`` runs generated tabletop clips (ground-truth label maps, as the soak's
``labels`` segmentation; ``--segmenter ultralytics`` sends the robot's segmenter's instead, and
``--clips held-out`` takes the evaluation's scenes) through issue 16's conditions by default
(2 kbps link, target 1.8 kbps, 10 % loss, 5 % reordering, 200 ms); ``--narrow A B`` halves the
link between A and B seconds.
Prints, per ``--jitter`` value:

- frames handed out and label maps decoded (what ``decoded_labels`` publishes);
- the gaps between decoded label maps, and every gap of 1 s or more explained (``explain_gaps``,
  the soak's rule too): *recovery* when a semantic frame inside it was lost on the link and the
  gap ends on an I-frame (the codec cannot resume before one; the keyframe request brings it
  early), *unexplained* otherwise; for the recoveries, where the time goes (capture of the first
  frame lost -> capture of the I-frame
  that ended it: the request and the encoder's refresh limit; I-frame capture -> decoded: the
  link's queue, the I-frame's own transfer, its latency);
- kbps sent per ``--window-s`` against the budget in force, and the congestion controller's cuts;
- the label map in force on each frame (decoded or held) against the exact labels (mIoU, per
  frame, averaged), and the feedback: acknowledgements and keyframe requests sent back, P-frames
  predicted from an acknowledged frame (``--ack-loss``: the sender's threshold, 1 = never).

No synthesis: these are the link's and the codecs' figures; the soak (``bench ros --soak``) adds
processes, DDS and the synthesizer.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np

from semcomm_ros.codec.packet import frame_bits
from semcomm_ros.eval.metrics import miou
from semcomm_ros.receiver import ReceiverConfig
from semcomm_ros.scenes import tabletop_clip
from semcomm_ros.scenes.splits import TABLE_SEED0
from semcomm_ros.sender import RECOVERY_MODES
from semcomm_ros.system import ChainConfig, Session

#: the first scene of the bench's own clips (``--clips bench``), inside the codec bench's seeds
BENCH_SEED0 = 4000


def add_arguments(p) -> None:
    p.add_argument("--frames", type=int, default=600, help="frames (10 fps; default: %(default)s = 60 s)")
    p.add_argument("--size", type=int, default=128, help="camera size, square (default: %(default)s)")
    p.add_argument("--link-kbps", type=float, default=2.0)
    p.add_argument("--target-kbps", type=float, default=1.8, help="the encoder's budget (default: %(default)s)")
    p.add_argument("--lowres-kbps", type=float, default=0.72,
                   help="the low-res stream's share of the budget (default: %(default)s = the encoder's 0.4)")
    p.add_argument("--loss", type=float, default=0.1)
    p.add_argument("--reorder", type=float, default=0.05)
    p.add_argument("--latency-ms", type=float, default=200.0)
    p.add_argument("--narrow", type=float, nargs=2, default=None, metavar=("FROM_S", "TO_S"),
                   help="the link at half its rate between these times")
    p.add_argument("--window-s", type=float, default=60.0, help="window of the kbps figures")
    p.add_argument("--jitter", type=int, nargs="+", default=[0, 3],
                   help="jitter_frames values to compare (0 = no jitter buffer; default: %(default)s)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--feedback-latency-ms", type=float, default=0.0,
                   help="delay of the decoder's feedback back to the encoder (default: %(default)s, as over DDS)")
    p.add_argument("--ack-loss", type=float, default=None,
                   help="reported loss at or above which P-frames are predicted from acknowledged frames "
                        "(default: the sender's; 1 = never)")
    p.add_argument("--redundancy", type=int, default=None,
                   help="copies of earlier semantic packets each one carries under loss (default: the sender's; 0 = "
                        "none)")
    p.add_argument("--redundancy-loss", type=float, default=None,
                   help="reported loss at or above which they are carried (default: the sender's; 1 = never)")
    p.add_argument("--recovery", choices=RECOVERY_MODES, default=None,
                   help="answer to a semantic keyframe request (default: the sender's)")
    p.add_argument("--clips", choices=("bench", "held-out"), default="bench",
                   help=f"scenes: the codec bench's (seeds {BENCH_SEED0}+) or the evaluation's held-out clips (the "
                        "scenes of `semcomm eval`, continued to 100 frames each) (default: %(default)s)")
    p.add_argument("--segmenter", choices=("labels", "ultralytics"), default="labels",
                   help="what the robot sends: the exact label maps, or the shipped segmenter's (the whole "
                        "chain; the label map in force is scored against the exact labels either way) "
                        "(default: %(default)s)")


def _frames(frames: int, size: int, first_seed: int):
    seed, left = 0, frames
    while left > 0:
        for item in tabletop_clip(first_seed + seed, min(100, left), size, size):
            yield item
        left -= 100
        seed += 1


def measure(args, jitter: int, fps: float = 10.0) -> dict:
    cfg = ChainConfig(fps=fps, link_kbps=args.link_kbps, target_kbps=args.target_kbps, lowres_kbps=args.lowres_kbps,
                      latency_ms=args.latency_ms, loss_rate=args.loss, reorder_rate=args.reorder, seed=args.seed,
                      feedback_latency_ms=getattr(args, "feedback_latency_ms", 0.0))
    session = Session(cfg)
    session.receiver.config = ReceiverConfig(jitter_frames=jitter)
    for name in ("ack_loss", "redundancy", "redundancy_loss", "recovery"):
        if getattr(args, name, None) is not None:
            session.sender.reconfigure(**{name: getattr(args, name)})
    out, budget, exact, scores = [], [], {}, []

    def score(frames):
        # the label map the operator sees on each frame (decoded or held) against the exact one
        for f in frames:
            gt = exact.pop(f.index, None)
            if gt is not None:
                scores.append(miou(f.labels, gt) if f.labels is not None else 0.0)
        return frames

    narrowed = False
    segment = _segmenter(getattr(args, "segmenter", "labels"))
    first_seed = TABLE_SEED0 if getattr(args, "clips", "bench") == "held-out" else BENCH_SEED0
    for k, (rgb, labels) in enumerate(_frames(args.frames, args.size, first_seed)):
        t = k / fps
        if args.narrow and narrowed != (args.narrow[0] <= t < args.narrow[1]):
            narrowed = not narrowed
            session.link.set_params(t, bandwidth_kbps=args.link_kbps / (2 if narrowed else 1))
        exact[k] = labels
        out += score(session.step(rgb, labels if segment is None else segment(rgb)))
        budget.append(session.sender.budget_kbps)
    out += score(session.finish())
    return dict(jitter=jitter, out=out, sent=session.sent, arrived=session.arrived, budget=budget,
                miou=float(np.mean(scores)) if scores else float("nan"), feedback=dict(session.feedback_sent),
                counts=dict(session.receiver.counts), sender=dict(session.sender.counts),
                cuts=session.sender.congestion.cuts if session.sender.congestion else 0,
                latency=float(np.median([f.t_ready - f.index / fps for f in out])))


@functools.cache
def _segmenter(name: str):
    """None for the exact labels, else the robot's segmenter (rgb -> label map), loaded once for all
    the ``--jitter`` values of a run."""
    if name == "labels":
        return None
    from semcomm_ros.segmentation import load_segmenter  # deferred: loads torch / onnxruntime

    return load_segmenter()


def explain_gaps(decoded, iframe, arrived, capture_s, skip=None, min_gap_s: float = 1.0) -> dict:
    """The rule both the offline bench and the ROS soak apply to each gap of ``min_gap_s`` or more
    between decoded label maps: a *codec recovery* when a semantic frame inside it never reached
    the decoder and the label map that ends it is an I-frame's or a recovery P-frame's (the codec
    cannot resume before one; the keyframe request brings it early), *unexplained* otherwise.

    ``decoded``: [(t received, position, capture -> received s)] in the order received, position
    = the frame's place in capture order (None: a frame the sender's record does not know);
    ``iframe(pos)``, ``arrived(pos)``: it was sent as an I-frame / reached the decoder;
    ``capture_s(pos)``: its capture time; ``skip(ta, tb)``: leave this gap out (restarts). For the
    recoveries: first frame lost -> I-frame captured, and I-frame captured -> received."""
    recoveries, unexplained = [], []
    for (ta, pa, _), (tb, pb, latency_b) in zip(decoded, decoded[1:]):
        g = tb - ta
        if g < min_gap_s or (skip is not None and skip(ta, tb)):
            continue
        if pa is None or pb is None:
            unexplained.append({"at": ta, "gap_s": round(g, 2), "why": "label map not in the sender's record"})
            continue
        lost = [p for p in range(pa + 1, pb) if not arrived(p)]
        if lost and iframe(pb):
            recoveries.append({"at": ta, "gap_s": g, "to_iframe_s": capture_s(pb) - capture_s(lost[0]),
                               "iframe_to_received_s": latency_b})
        else:
            unexplained.append({"at": ta, "gap_s": round(g, 2), "lost_inside": len(lost),
                                "ends_on_iframe": iframe(pb)})
    return {"recoveries": recoveries, "unexplained": unexplained}


def label_gaps(out, sent, arrived, fps: float = 10.0) -> dict:
    """Gaps between decoded label maps, each of 1 s or more explained (``explain_gaps``)."""
    decoded = [(f.t_ready, f.index, f.t_ready - f.index / fps) for f in out if f.labels_new]
    why = explain_gaps(decoded, lambda p: sent[p].iframe or sent[p].reference > 1,
                       lambda p: ("semantic", p) in arrived, lambda p: p / fps)
    return {"gaps": np.diff([t for t, _, _ in decoded]), "decoded": len(decoded), **why}


def windows(sent, budget, window_s: float, fps: float = 10.0) -> list[tuple[float, float, float]]:
    """(start s, kbps sent, highest budget in force) per window."""
    n = max(1, int(round(window_s * fps)))
    bits = np.asarray([frame_bits(s.semantic) + frame_bits(s.lowres) for s in sent], float)
    return [(k / fps, bits[k:k + n].sum() / (min(n, len(bits) - k) / fps) / 1000.0, max(budget[k:k + n]))
            for k in range(0, len(bits) - n // 2, n)]


#: what an acknowledgement would cost on a radio link: frame index (16 bits), loss (8), check (8)
ACK_BITS = 32


def _hist(values, edges=(0, 0.25, 0.5, 1.0, 2.0, 5.0, np.inf)) -> str:
    return ", ".join(f"{a}-{b}: {int(((values >= a) & (values < b)).sum())}" for a, b in zip(edges[:-1], edges[1:]))


def run(args) -> int:
    if args.frames < 20 or args.size % 32:
        raise SystemExit("bench receiver: --frames must be >= 20 and --size a multiple of 32")
    if args.narrow and not 0 <= args.narrow[0] < args.narrow[1]:
        raise SystemExit("bench receiver: --narrow FROM_S TO_S needs 0 <= FROM_S < TO_S")
    import logging

    logging.getLogger("semcomm_ros").setLevel(logging.ERROR)  # one line per loss: the counters say it
    print(f"[bench receiver] {args.frames} frames {args.size}x{args.size} at 10 fps; link {args.link_kbps:g} kbps"
          + (f" (half {args.narrow[0]:g}-{args.narrow[1]:g} s)" if args.narrow else "")
          + f", {args.loss:.0%} loss, {args.reorder:.0%} reordering, {args.latency_ms:g} ms"
          + (f" (feedback {args.feedback_latency_ms:g} ms)" if args.feedback_latency_ms else "")
          + f"; target {args.target_kbps:g} kbps"
          + (f", ack_loss {args.ack_loss:g}" if args.ack_loss is not None else "")
          + (f", redundancy {args.redundancy}" if args.redundancy is not None else "")
          + (f", redundancy_loss {args.redundancy_loss:g}" if args.redundancy_loss is not None else "")
          + (f", recovery {args.recovery}" if args.recovery is not None else "")
          + f"; {args.clips} clips, robot sends "
          + ("exact labels" if args.segmenter == "labels" else "the segmenter's"))
    for jitter in args.jitter:
        m = measure(args, jitter)
        out, c, s = m["out"], m["counts"], m["sender"]
        g = np.diff([f.t_ready for f in out])
        lg = label_gaps(out, m["sent"], m["arrived"])
        held = [f for f in out if not f.labels_new]
        runs = [len(list(r)) for new, r in itertools.groupby(out, key=lambda f: f.labels_new) if not new]
        print(f"  jitter_frames={jitter}: {len(out)}/{args.frames} frames handed out; time between frames "
              f"p50 {np.median(g) * 1e3:.0f} / p99 {np.percentile(g, 99) * 1e3:.0f} / max {g.max() * 1e3:.0f} ms, "
              f"{int((g > 1).sum())} gaps over 1 s; capture -> handed out p50 {m['latency'] * 1e3:.0f} ms")
        print(f"    label maps decoded {lg['decoded']} ({lg['decoded'] / args.frames:.0%} of frames); label map held "
              f"on {len(held)} frames in {len(runs)} runs, longest {max(runs, default=0) / 10:.1f} s")
        lgg = lg["gaps"]
        rec, un = lg["recoveries"], lg["unexplained"]
        print(f"    gaps between decoded label maps (s): {_hist(lgg)}; longest {lgg.max() if len(lgg) else 0:.2f} s")
        if rec:
            print(f"    gaps >= 1 s: {len(rec)} codec recoveries (a semantic frame lost, the gap ends on an I-frame "
                  "or a recovery P-frame): "
                  f"median {np.median([r['gap_s'] for r in rec]):.2f} s = first loss -> I-frame captured "
                  f"{np.median([r['to_iframe_s'] for r in rec]):.2f} s + I-frame captured -> decoded "
                  f"{np.median([r['iframe_to_received_s'] for r in rec]):.2f} s; {len(un)} unexplained"
                  + (f" {[dict(u, at=round(u['at'], 1)) for u in un[:5]]}" if un else ""))
        else:
            print(f"    gaps >= 1 s: 0 codec recoveries; {len(un)} unexplained"
                  + (f" {[dict(u, at=round(u['at'], 1)) for u in un[:5]]}" if un else ""))
        print(f"    lost {c['lost']}, reordered and used {c['reordered']}, stale {c['stale']}, "
              f"bad {c['bad_packets']}, waiting for an I-frame/keyframe {c['waiting_for_keyframe']}, "
              f"keyframe requests {c['keyframe_requests']} "
              f"(refreshes sent {s['refreshes']}), I-frames {s['iframes']}, keyframes {s['keyframes']}")
        fb = m["feedback"]
        print(f"    label map in force vs the exact labels: mIoU {m['miou']:.3f}; feedback: {fb['acks']} "
              f"acknowledgements ({fb['acks'] * ACK_BITS / (args.frames / 10) / 1000:.3f} kbps at {ACK_BITS} bits "
              f"each), {fb['requests']} keyframe requests; P-frames from an acknowledged frame {s['acked_pframes']}")
        print(f"    redundancy: {s['copies']} copies of earlier semantic packets and {s['copies_lowres']} of low-res "
              f"ones sent ({s['copy_bits'] / (args.frames / 10) / 1000:.3f} kbps); decoded from a copy: "
              f"{c['recovered']} label maps, {c['recovered_lowres']} low-res frames; "
              f"{s['recoveries']} refreshes by a P-frame from the decoder's newest frame")
        w = windows(m["sent"], m["budget"], args.window_s)
        print(f"    kbps sent per {args.window_s:g} s (highest budget in force): "
              + " ".join(f"{kb:.2f}({bud:.2f})" for _, kb, bud in w)
              + f"; congestion cuts {m['cuts']}")
    return 0
