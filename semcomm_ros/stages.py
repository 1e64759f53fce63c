"""An ordered worker stage: the operator side's second core at work while the first synthesizes.

The synthesizer's denoising graph runs on one thread (synth/runtime.py), so while it denoises frame
k+1 the other core is free for frame k's render, ``to_camera`` and publishing. ``OrderedStage`` runs a
function on items in the order they were handed over, on a thread of its own, behind a short
bounded queue: a slow stage holds the producer back instead of growing a backlog (latency stays
bounded), and nothing is reordered (lockstep replays stay bit-identical). The decoder node and
``semcomm bench synth --runtime`` use it the same way.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Callable

log = logging.getLogger(__name__)

_STOP = object()


class OrderedStage:
    """``fn(item)`` for every submitted item, in order, on one worker thread.

    ``depth``: items waiting at most (``submit`` blocks beyond it). An exception in ``fn`` is
    handed to ``on_error(item, exc)`` (default: logged) and the stage goes on with the next item.
    """

    def __init__(self, fn: Callable, depth: int = 1, name: str = "stage",
                 on_error: Callable | None = None):
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self._fn = fn
        self._on_error = on_error or (lambda item, exc: log.error("%s failed: %s: %s", name,
                                                                  type(exc).__name__, exc))
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item) -> None:
        if not self._thread.is_alive():
            raise RuntimeError("the stage is closed")
        self._queue.put(item)

    def join(self) -> None:
        """Wait until every submitted item is done."""
        self._queue.join()

    def close(self, timeout: float = 5.0) -> None:
        """Finish the submitted items, then stop the worker."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                try:
                    self._fn(item)
                except Exception as exc:  # noqa: BLE001 - one bad item must not stop the stream
                    self._on_error(item, exc)
            finally:
                self._queue.task_done()
