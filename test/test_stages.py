"""OrderedStage: the decoder's output stage beside the synthesizer (order kept, errors contained)."""

from __future__ import annotations

import threading
import time

import pytest

from semcomm_ros.stages import OrderedStage


def test_items_run_in_order_on_another_thread_and_a_failure_does_not_stop_the_stream():
    done, errors, threads = [], [], set()

    def work(k):
        threads.add(threading.get_ident())
        time.sleep(0.002 * (k % 3))  # uneven work must not reorder anything
        if k == 5:
            raise ValueError("bad frame")
        done.append(k)

    stage = OrderedStage(work, depth=2, on_error=lambda k, exc: errors.append((k, str(exc))))
    for k in range(20):
        stage.submit(k)
    stage.join()
    stage.close()
    assert done == [k for k in range(20) if k != 5]
    assert errors == [(5, "bad frame")]
    assert threads and threading.get_ident() not in threads
    with pytest.raises(RuntimeError, match="closed"):
        stage.submit(21)


def test_a_slow_stage_holds_the_producer_back_instead_of_queueing_without_bound():
    release = threading.Event()
    stage = OrderedStage(lambda k: release.wait(5), depth=1)
    stage.submit(0)  # taken by the worker, which waits
    time.sleep(0.05)
    stage.submit(1)  # waits in the queue
    blocked = threading.Thread(target=stage.submit, args=(2,))
    blocked.start()
    blocked.join(0.2)
    assert blocked.is_alive()  # no room: the producer waits
    release.set()
    blocked.join(2)
    assert not blocked.is_alive()
    stage.close()
    with pytest.raises(ValueError):
        OrderedStage(print, depth=0)
