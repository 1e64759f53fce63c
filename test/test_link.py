import pytest

from semcomm_ros.link import LinkParams, SimulatedLink


def _run(link, n=200, fps=10.0, nbytes=25, tail=30.0):
    got = []
    for k in range(n):
        t = k / fps
        link.send(t, k, nbytes)
        got += [(t, x) for x in link.receive(t)]
    got += [(n / fps + tail, x) for x in link.receive(n / fps + tail)]
    return got


def test_bandwidth_cap_holds_in_the_long_run():
    # 25 B/frame at 10 fps = 2 kbps offered into a 1 kbps link: half must wait, the queue bound drops the rest.
    link = SimulatedLink(LinkParams(bandwidth_kbps=1.0, latency_ms=0.0, burst_s=1.0, max_delay_s=4.0), seed=1)
    arrivals = []
    for k in range(300):
        t = k / 10
        link.send(t, k, 25)
        arrivals += [(t, x) for x in link.receive(t)]
    delivered_bits = 200 * len(arrivals)
    assert delivered_bits <= 1000 * 30.0 + 1000 * 1.0  # rate x duration + one bucket
    assert delivered_bits >= 0.9 * 1000 * 29.0
    assert link.dropped_queue > 0
    assert [x for _, x in arrivals] == sorted(x for _, x in arrivals)  # FIFO without reordering


def test_under_the_cap_everything_arrives_without_delay():
    link = SimulatedLink(LinkParams(bandwidth_kbps=4.0, latency_ms=0.0), seed=0)
    got = _run(link, n=50, nbytes=25, tail=0.0)
    assert [x for _, x in got] == list(range(50))


def test_latency_loss_and_reordering():
    link = SimulatedLink(LinkParams(bandwidth_kbps=0.0, latency_ms=250.0), seed=0)
    link.send(0.0, "a", 10)
    assert link.receive(0.2) == [] and link.receive(0.25) == ["a"]

    lossy = SimulatedLink(LinkParams(bandwidth_kbps=0.0, latency_ms=0.0, loss_rate=0.1), seed=3)
    got = _run(lossy, n=2000)
    assert 0.07 < lossy.dropped_loss / 2000 < 0.13
    assert len(got) == 2000 - lossy.dropped_loss

    shuffled = SimulatedLink(LinkParams(bandwidth_kbps=0.0, latency_ms=0.0, reorder_rate=0.2), seed=5)
    order = [x for _, x in _run(shuffled, n=200)]
    assert sorted(order) == list(range(200)) and order != list(range(200))


def test_big_packet_runs_into_debt_and_later_packets_pay():
    link = SimulatedLink(LinkParams(bandwidth_kbps=1.0, latency_ms=0.0, burst_s=1.0, max_delay_s=10.0), seed=0)
    link.send(0.0, "iframe", 500)  # 4000 bits: 3 s beyond a full 1000-bit bucket
    link.send(0.0, "next", 10)
    assert link.receive(0.0) == ["iframe"]
    assert link.receive(3.0) == [] and link.receive(3.1) == ["next"]


def test_bad_parameters_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="loss_rate"):
        SimulatedLink(LinkParams(loss_rate=1.5))
    link = SimulatedLink()
    with pytest.raises(ValueError, match="bandwidth_kbps"):
        link.set_params(bandwidth_kbps=-1)
    link.set_params(latency_ms=10)
    assert link.params.latency_ms == 10
    with pytest.raises(ValueError, match="max_delay_s"):
        link.set_params(max_delay_s=0)


def _offer(link, t0, t1, fps=10.0, nbytes=25, got=None):
    """Offer one packet a frame over [t0, t1); returns [(arrival time, frame time)] so far."""
    got = [] if got is None else got
    for k in range(int(round(t0 * fps)), int(round(t1 * fps))):
        t = k / fps
        link.send(t, t, nbytes)
        got += [(t, x) for x in link.receive(t)]
    return got


def test_queue_is_bounded_in_time_not_bits():
    """2 kbps offered into 1 kbps: whatever the rates, no delivered packet waited longer than the
    bound, and the overflow is dropped on arrival instead."""
    for kbps, bound in ((1.0, 2.0), (0.25, 2.0), (1.0, 0.5)):
        link = SimulatedLink(LinkParams(bandwidth_kbps=kbps, latency_ms=0.0, max_delay_s=bound), seed=0)
        got = _offer(link, 0.0, 60.0, nbytes=int(25 * 2 * kbps))
        waits = [arrived - sent for arrived, sent in got]
        # the receive poll runs once a frame: an arrival is seen up to one frame late
        assert max(waits) <= bound + 0.1 + 1e-9, (kbps, bound, max(waits))
        assert max(waits) > 0.5 * bound  # the queue was used
        assert link.dropped_queue > 0.3 * 600


def test_bandwidth_change_re_times_the_queue():
    """Packets queued at 1 kbps leave at the new rate once the link comes back to 4 kbps: the
    delay falls back within a second, and lowering the bound drops no queued packet."""
    link = SimulatedLink(LinkParams(bandwidth_kbps=1.0, latency_ms=0.0, max_delay_s=3.0), seed=0)
    got = _offer(link, 0.0, 20.0)  # 2 kbps offered: the queue fills to the bound
    assert link.queue_delay_s(20.0) > 2.5
    queued = link.queued()
    link.set_params(t=20.0, max_delay_s=0.5)
    assert link.queued() == queued  # nothing already queued was thrown away
    link.set_params(t=20.0, bandwidth_kbps=4.0)
    got = _offer(link, 20.0, 30.0, got=got)
    late = [a - s for a, s in got if s >= 21.0]
    assert late and max(late) <= 0.2, max(late)
    assert link.queue_delay_s(30.0) < 0.1
    # the queued packets all came through, in order
    sent = [s for _, s in got]
    assert sent == sorted(sent)


def test_next_arrival_counts_queued_packets():
    link = SimulatedLink(LinkParams(bandwidth_kbps=1.0, latency_ms=100.0, burst_s=1.0), seed=0)
    link.send(0.0, "a", 125)  # 1000 bits: the whole bucket
    link.send(0.0, "b", 125)  # waits 1 s for the bucket to refill
    assert link.receive(0.1) == ["a"]
    assert link.next_arrival() == pytest.approx(1.1)
    assert link.receive(1.05) == [] and link.receive(1.1) == ["b"]
    assert link.next_arrival() is None
