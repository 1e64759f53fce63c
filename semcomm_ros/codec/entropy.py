"""Range coding of the codec's symbols with constriction, plus the probability models it uses.

constriction writes 32-bit words; at ~50-400 bits a frame, whole words would waste ~16 bits a
frame. ``SymbolWriter.finish`` therefore trims the stream to the shortest byte string that still
decodes to the same symbols when the decoder pads it with zero bytes (checked by decoding it), which
brings the overhead of ending the stream down to about one byte.
"""

from __future__ import annotations

from functools import lru_cache

import constriction
import numpy as np

from semcomm_ros.codec.errors import BitstreamError

_model = constriction.stream.model
_queue = constriction.stream.queue

_PAD = b"\0" * 8


@lru_cache(maxsize=None)
def uniform(n: int):
    return _model.Uniform(int(n))


@lru_cache(maxsize=None)
def laplace(size: int, center: float, scale: float):
    """Discrete Laplace (two-sided geometric) over {0..size-1} centred at ``center``."""
    k = np.arange(size, dtype=np.float64)
    p = np.exp(-np.abs(k - center) / max(scale, 1e-3))
    return _model.Categorical(p / p.sum(), perfect=False)


@lru_cache(maxsize=None)
def laplace_mixture(size: int, center: float, weight: float, scale1: float, scale2: float):
    """``weight`` x Laplace(``scale1``) + (1 - ``weight``) x Laplace(``scale2``) over {0..size-1}."""
    k = np.abs(np.arange(size, dtype=np.float64) - center)
    p1 = np.exp(-k / scale1)
    p2 = np.exp(-k / scale2)
    p = weight * p1 / p1.sum() + (1 - weight) * p2 / p2.sum()
    return _model.Categorical(p / p.sum(), perfect=False)


@lru_cache(maxsize=None)
def quantized_laplace(lo: int, hi: int):
    """Laplace family over {lo..hi}; mean and scale are given per symbol when coding."""
    return _model.QuantizedLaplace(int(lo), int(hi))


@lru_cache(maxsize=None)
def categorical(probs: tuple):
    p = np.asarray(probs, dtype=np.float64)
    return _model.Categorical(p / p.sum(), perfect=False)


# counts (number of regions, points, ...) as an Elias-gamma-like code: the bit length of count+1
# under a categorical model over 1..21 bits, then the remaining bits uniformly
_NBITS_PROBS = tuple(float(0.6**i) for i in range(21))


def nbits_probs(*head: float) -> tuple:
    """A bit-length model: ``head`` for 1, 2, ... bits, a small floor for longer counts."""
    return tuple(head) + (1e-4,) * (21 - len(head))


class SymbolWriter:
    def __init__(self) -> None:
        self._segments: list[tuple[np.ndarray, object, tuple]] = []

    def write(self, symbols, model, *params) -> None:
        """Symbols under ``model``; ``params`` (float arrays, one value a symbol) for model families."""
        arr = np.atleast_1d(np.asarray(symbols, dtype=np.int32))
        if arr.size:
            self._segments.append((arr, model, tuple(np.asarray(p, dtype=np.float64) for p in params)))

    def uint(self, value: int, n: int) -> None:
        if n > 1:  # one possible value carries no information (and constriction rejects the model)
            self.write(int(value), uniform(n))

    def count(self, value: int, probs: tuple = _NBITS_PROBS) -> None:
        v = int(value) + 1
        nb = v.bit_length()
        self.write(nb - 1, categorical(probs))
        if nb > 1:
            self.write(v - (1 << (nb - 1)), uniform(1 << (nb - 1)))

    def finish(self) -> bytes:
        if not self._segments:
            return b""
        enc = _queue.RangeEncoder()
        for syms, model, params in self._segments:
            enc.encode(syms, model, *params)
        full = enc.get_compressed().astype(">u4").tobytes()
        # Shortest prefix (optionally with its last byte incremented) that decodes identically.
        best = full
        for k in range(len(full) - 1, -1, -1):
            head = int.from_bytes(full[:k], "big") if k else 0
            ok = None
            for cand in (head, head + 1):
                if k and cand >= 1 << (8 * k):
                    continue
                data = cand.to_bytes(k, "big") if k else b""
                if self._decodes(data):
                    ok = data
                    break
            if ok is None:
                break
            best = ok
        return best

    def _decodes(self, data: bytes) -> bool:
        try:
            dec = _queue.RangeDecoder(_words(data))
            for syms, model, params in self._segments:
                got = dec.decode(model, *params) if params else dec.decode(model, syms.size)
                if not np.array_equal(got, syms):
                    return False
            return True
        except Exception:  # constriction asserts on data invalid for the model
            return False


def _words(data: bytes) -> np.ndarray:
    padded = data + b"\0" * ((-len(data)) % 4) + _PAD
    return np.frombuffer(padded, dtype=">u4").astype(np.uint32)


class SymbolReader:
    """Decodes what SymbolWriter wrote; any failure of the range decoder becomes BitstreamError."""

    def __init__(self, data: bytes, what: str = "payload") -> None:
        self._what = what
        self._dec = _queue.RangeDecoder(_words(bytes(data)))

    def read(self, model, n: int | None = None, *params):
        try:
            if params:
                return np.asarray(self._dec.decode(model, *(np.asarray(p, dtype=np.float64) for p in params)),
                                  dtype=np.int64)
            if n is None:
                return int(self._dec.decode(model))
            return np.asarray(self._dec.decode(model, int(n)), dtype=np.int64)
        except BitstreamError:
            raise
        except Exception as exc:  # noqa: BLE001 - constriction raises AssertionError/ValueError
            raise BitstreamError(f"corrupt {self._what}: range decoder failed ({exc})") from None

    def uint(self, n: int) -> int:
        return self.read(uniform(n)) if n > 1 else 0

    def count(self, limit: int, what: str, probs: tuple = _NBITS_PROBS) -> int:
        nb = self.read(categorical(probs)) + 1
        v = 1
        if nb > 1:
            v = (1 << (nb - 1)) + self.read(uniform(1 << (nb - 1)))
        v -= 1
        if v > limit:
            raise BitstreamError(f"corrupt {self._what}: {what} = {v} exceeds the limit {limit}")
        return v
