"""``semcomm fuzz``: feed decoders mutated, truncated, spliced and shuffled packets.

A decoder passes when every bad packet either decodes to a valid map or raises
``BitstreamError`` (with a message); any other exception, a decode slower than the time limit,
or an output of the wrong shape/dtype is a failure. Valid streams are encoded first, decoders
are brought to a random position of the stream (so P-frames meet a real reference state), and
then get one bad packet followed by the rest of the stream.

Targets (``targets()``): ``semantic`` and ``lowres``, each with its corpus of valid packet
streams next to this runner (``fuzz/semantic.py``, ``fuzz/lowres.py``).

``feedback`` (``run_feedback_fuzz``) fuzzes the other direction: acknowledgements that are forged
(frames the decoder lost, never sent, not yet sent), stale, repeated or absurd reach an encoder
predicting from acknowledged frames while packets are lost. A pass: the encoder takes or ignores
each, and every packet either decodes to exactly the map a decoder that saw every packet shows,
or is refused with ``FrameLostError`` (the decoder does not hold its reference; the refusal asks
for an I-frame, as the receiver does) -- never a wrong map, never another exception.
"""

from __future__ import annotations

import copy
import logging
import random
import re
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from semcomm_ros.codec.errors import BitstreamError
from semcomm_ros.codec.fuzz import lowres, semantic
from semcomm_ros.codec.lowres import LowResDecoder
from semcomm_ros.codec.packet import FrameLostError, bundle, parse_header
from semcomm_ros.codec.semantic import PROFILES, SemanticDecoder, SemanticEncoder

MUTATIONS = ("bitflip", "bytes", "truncate", "extend", "random", "splice", "shuffle", "reseal", "header")


@dataclass
class Target:
    name: str
    corpus: Callable[[int], list[list[bytes]]]  # seed -> valid packet streams
    decoder: Callable[[], object]  # () -> object with decode(packet)
    reseal: Callable[[bytes], bytes] | None = None  # recompute the checksum of a mutated packet
    # The low-res decoder answers a detected loss with None ("waiting for a keyframe"), by design.
    none_means_lost: bool = False


def targets() -> dict[str, Target]:
    return {"semantic": Target("semantic", semantic.fuzz_corpus, SemanticDecoder, semantic.fuzz_reseal),
            "lowres": Target("lowres", lowres.fuzz_corpus, LowResDecoder, lowres.fuzz_reseal,
                             none_means_lost=True)}


@dataclass
class FuzzReport:
    target: str
    packets: int = 0
    decoded: int = 0  # bad packets that still decoded to a valid map
    rejected: int = 0  # BitstreamError
    failures: list[str] = field(default_factory=list)
    by_mutation: Counter = field(default_factory=Counter)
    max_ms: float = 0.0
    messages: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.by_mutation.items()))
        failures = [f"  FAILURE: {f}" for f in self.failures[:10]]
        if self.target == "feedback":
            return "\n".join([
                f"target feedback: {self.by_mutation.total()} acknowledgements, then {self.packets} packets: "
                f"{self.decoded} decoded exactly as the encoder coded them, {self.rejected} refused "
                f"(FrameLostError), {len(self.failures)} other exceptions/wrong maps",
                "  acknowledgements: " + kinds,
                "  refusals:", *[f"    {n:6d}  {m}" for m, n in self.messages.most_common(3)], *failures])
        if self.target == "bundle":
            return "\n".join([
                f"target bundle: {self.packets} trials of a mangled link packet among valid ones into the Receiver: "
                f"{self.rejected} packets refused as bad (counted, a refresh asked for), {self.decoded} label maps "
                f"decoded, {len(self.failures)} exceptions/invalid maps",
                "  mutations: " + kinds, *failures])
        return "\n".join([
            f"target {self.target}: {self.packets} bad packets: {self.rejected} BitstreamError, "
            f"{self.decoded} decoded to a valid map, {len(self.failures)} other exceptions/failures; "
            f"slowest decode {self.max_ms:.1f} ms",
            "  mutations: " + kinds,
            "  most common errors:", *[f"    {n:6d}  {m}" for m, n in self.messages.most_common(6)], *failures])


def _mutate(kind: str, pkt: bytes, stream: list[bytes], rng: random.Random, reseal) -> bytes:
    b = bytearray(pkt)
    if kind == "bitflip" and b:
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif kind == "bytes" and b:
        for _ in range(rng.randint(1, 3)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif kind == "truncate":
        b = b[: rng.randrange(len(b) + 1)]
    elif kind == "extend":
        b += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    elif kind == "random":
        b = bytearray(rng.randrange(256) for _ in range(rng.randint(0, 200)))
        if b and rng.random() < 0.7:
            b[0] = (b[0] & 0x0F) | (pkt[0] & 0xF0)  # keep the magic: get past the first check
    elif kind == "splice":
        other = rng.choice(stream)
        cut = rng.randrange(len(b) + 1)
        b = b[:cut] + bytearray(other[rng.randrange(len(other) + 1) :])
    elif kind == "header" and len(b) > 2:
        i = rng.randrange(min(len(b), 8))
        b[i] = rng.randrange(256)
    elif kind == "reseal" and b:
        # corrupt the payload, then fix the checksum so the payload parser itself is exercised
        for _ in range(rng.randint(1, 6)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        if rng.random() < 0.3:
            b = b[: rng.randrange(2, len(b) + 1)] if len(b) > 2 else b
        if reseal is not None:
            b = bytearray(reseal(bytes(b)))
    return bytes(b)


def run_fuzz(target: Target, count: int, seed: int = 0, limit_ms: float = 2000.0) -> FuzzReport:
    rng = random.Random(seed)
    streams = target.corpus(seed)
    # decoder states at every position of every stream
    states: list[tuple[list[bytes], int, object]] = []
    for stream in streams:
        dec = target.decoder()
        states.append((stream, 0, copy.deepcopy(dec)))
        for i, pkt in enumerate(stream):
            dec.decode(pkt)
            states.append((stream, i + 1, copy.deepcopy(dec)))
    rep = FuzzReport(target.name)
    for n in range(count):
        stream, pos, dec0 = rng.choice(states)
        dec = copy.deepcopy(dec0)
        kind = MUTATIONS[n % len(MUTATIONS)]
        if kind == "shuffle":
            seq = list(stream)
            rng.shuffle(seq)
            seq = seq[: rng.randint(1, len(seq))]
        else:
            base = stream[pos] if pos < len(stream) else rng.choice(stream)
            seq = [_mutate(kind, base, stream, rng, target.reseal)] + list(stream[pos + 1 : pos + 4])
        rep.by_mutation[kind] += 1
        for pkt in seq:
            rep.packets += 1
            t0 = time.perf_counter()
            try:
                out = dec.decode(pkt)
            except BitstreamError as exc:
                rep.rejected += 1
                msg = str(exc)
                if not msg:
                    rep.failures.append(f"{kind}: BitstreamError without a message")
                rep.messages[re.sub(r"\d+", "#", msg.split(":")[0])[:70]] += 1
            except Exception as exc:  # noqa: BLE001 - the point of fuzzing
                rep.failures.append(f"{kind}: {type(exc).__name__}: {exc} | packet {pkt.hex()[:120]}\n"
                                    + traceback.format_exc(limit=3))
            else:
                rep.decoded += 1
                if out is None and target.none_means_lost:
                    rep.messages["lost: waiting for a keyframe (None)"] += 1
                elif not isinstance(out, np.ndarray):
                    rep.failures.append(f"{kind}: decode returned {type(out).__name__}")
            ms = 1e3 * (time.perf_counter() - t0)
            rep.max_ms = max(rep.max_ms, ms)
            if ms > limit_ms:
                rep.failures.append(f"{kind}: decode took {ms:.0f} ms (limit {limit_ms:.0f})")
    return rep


FEEDBACK_KINDS = ("genuine", "lost", "future", "stale", "repeat", "absurd")


def run_feedback_fuzz(count: int, seed: int = 0, frames: int = 16) -> FuzzReport:
    """``count`` mangled acknowledgements (at least), ``frames`` frames a trial."""
    rng = random.Random(seed)
    rep = FuzzReport("feedback")
    n_rng = np.random.default_rng(seed)
    while rep.by_mutation.total() < count:
        profile = rng.choice(PROFILES)
        enc = SemanticEncoder(xi=rng.choice((2.0, 4.0, 8.0)), period=rng.choice((4, 8, 32)), profile=profile)
        enc.predict_from_acked = True
        dec, full = SemanticDecoder(), SemanticDecoder()
        decoded: list[int] = []
        loss = rng.choice((0.1, 0.2, 0.4))
        for k, labels in enumerate(semantic._maps(n_rng, frames, 96, 160)):
            for _ in range(rng.randint(0, 3)):
                kind = rng.choice(FEEDBACK_KINDS)
                index = {"genuine": decoded[-1] if decoded else 0,
                         "lost": rng.choice([i for i in range(k) if i not in decoded] or [0]),
                         "future": k + rng.randint(0, 40),
                         "stale": rng.choice(decoded[:-2] or [0]),
                         "repeat": decoded[-1] if decoded else 0,
                         "absurd": rng.choice((-1, -(2**31), 2**32 - 1, 2**63, 0))}[kind]
                rep.by_mutation[kind] += 1
                try:
                    enc.acknowledge(index)
                except Exception as exc:  # noqa: BLE001 - the point of fuzzing
                    rep.failures.append(f"acknowledge({index}) [{kind}]: {type(exc).__name__}: {exc}")
            pkt = enc.encode(labels)
            want = full.decode(pkt)
            if rng.random() < loss:
                continue
            rep.packets += 1
            try:
                out = dec.decode(pkt)
            except FrameLostError as exc:
                rep.rejected += 1
                rep.messages[re.sub(r"\d+", "#", str(exc))[:70]] += 1
                enc.force_iframe()  # the receiver's keyframe request
                continue
            except Exception as exc:  # noqa: BLE001
                rep.failures.append(f"frame {k}: {type(exc).__name__}: {exc}")
                continue
            rep.decoded += 1
            decoded.append(k)
            if not np.array_equal(out, want):
                rep.failures.append(f"frame {k} ({profile}): decoded a map the encoder did not code for it")
    return rep


def bundle_streams(seed: int) -> list[tuple[list[bytes], list[np.ndarray]]]:
    """The semantic corpus as the link carries it under loss (each P-frame's packet repeating the
    P-frame before it, as ``Sender`` bundles them), with the maps a decoder shows in order."""
    out = []
    for stream in semantic.fuzz_corpus(seed):
        dec, maps, wire = SemanticDecoder(), [], []
        for k, pkt in enumerate(stream):
            maps.append(dec.decode(pkt))
            p_frames = k and not parse_header(pkt).is_iframe and not parse_header(stream[k - 1]).is_iframe
            wire.append(bundle([stream[k - 1]], pkt) if p_frames else pkt)
        out.append((wire, maps))
    return out


def run_bundle_fuzz(count: int, seed: int = 0) -> FuzzReport:
    """``count`` mangled link packets (redundancy bundles and plain ones) into the operator's
    ``Receiver``, each after a valid start of its stream and followed by the next packets: a pass is
    no exception, and every label map handed out is a map of the stream's size (never garbage)."""
    from semcomm_ros.receiver import Receiver  # deferred: the receiver imports this package's decoders

    rng = random.Random(seed)
    streams = bundle_streams(seed)
    rep = FuzzReport("bundle")
    quiet = logging.getLogger("semcomm_fuzz_bundle")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    for n in range(count):
        wire, maps = rng.choice(streams)
        pos = rng.randrange(len(wire))
        kind = MUTATIONS[n % len(MUTATIONS)]
        bad = _mutate(kind if kind != "shuffle" else "splice", wire[pos], wire, rng, None)
        rep.by_mutation[kind] += 1
        rx, t, frames = Receiver(logger=quiet), 0.0, []
        try:
            for k, pkt in enumerate(wire[:pos + 4]):
                rx.push_semantic(k, bad if k == pos else pkt, t)
                frames += rx.poll(t)
                t += 0.1
            frames += rx.flush(t)
        except Exception as exc:  # noqa: BLE001 - the point of fuzzing
            rep.failures.append(f"{kind} at {pos}: {type(exc).__name__}: {exc} | packet {bad.hex()[:120]}\n"
                                + traceback.format_exc(limit=3))
            continue
        rep.packets += 1
        rep.rejected += rx.counts["bad_packets"]
        rep.decoded += rx.counts["decoded"]
        for f in frames:
            if f.labels is not None and (f.labels.shape != maps[0].shape or f.labels.dtype != np.uint8):
                rep.failures.append(f"{kind} at {pos}: frame {f.index} handed out a {f.labels.dtype} "
                                    f"{f.labels.shape} map")
        if [f.index for f in frames] != sorted({f.index for f in frames}):
            rep.failures.append(f"{kind} at {pos}: frames out of order {[f.index for f in frames]}")
    return rep


def add_arguments(parser) -> None:
    parser.add_argument("--target", default="semantic",
                        help="what to fuzz: semantic, lowres (decoders), bundle (the receiver, with redundancy "
                             "bundles), feedback (acknowledgements), all")
    parser.add_argument("--count", type=int, default=10000, help="number of bad-packet trials (default 10000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit-ms", type=float, default=2000.0, help="a decode slower than this is a failure")


def run(args) -> int:
    table = targets()
    names = [*table, "bundle", "feedback"] if args.target == "all" else [args.target]
    bad = 0
    for name in names:
        if name not in table and name not in ("bundle", "feedback"):
            print(f"unknown target {name!r}; available: {', '.join(table)}, bundle, feedback")
            return 2
        t0 = time.perf_counter()
        if name == "feedback":
            rep = run_feedback_fuzz(args.count, args.seed)
        elif name == "bundle":
            rep = run_bundle_fuzz(args.count, args.seed)
        else:
            rep = run_fuzz(table[name], args.count, args.seed, args.limit_ms)
        print(rep.summary())
        print(f"  {time.perf_counter() - t0:.1f} s")
        bad += len(rep.failures)
    print("PASS" if not bad else f"FAIL: {bad} failures")
    return 0 if not bad else 1
