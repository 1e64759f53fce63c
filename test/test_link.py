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
    link = SimulatedLink(LinkParams(bandwidth_kbps=1.0, burst_s=1.0, max_queue_bits=4000), seed=1)
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
    link = SimulatedLink(LinkParams(bandwidth_kbps=4.0), seed=0)
    got = _run(link, n=50, nbytes=25, tail=0.0)
    assert [x for _, x in got] == list(range(50))


def test_latency_loss_and_reordering():
    link = SimulatedLink(LinkParams(bandwidth_kbps=0.0, latency_ms=250.0), seed=0)
    link.send(0.0, "a", 10)
    assert link.receive(0.2) == [] and link.receive(0.25) == ["a"]

    lossy = SimulatedLink(LinkParams(bandwidth_kbps=0.0, loss_rate=0.1), seed=3)
    got = _run(lossy, n=2000)
    assert 0.07 < lossy.dropped_loss / 2000 < 0.13
    assert len(got) == 2000 - lossy.dropped_loss

    shuffled = SimulatedLink(LinkParams(bandwidth_kbps=0.0, reorder_rate=0.2), seed=5)
    order = [x for _, x in _run(shuffled, n=200)]
    assert sorted(order) == list(range(200)) and order != list(range(200))


def test_big_packet_runs_into_debt_and_later_packets_pay():
    link = SimulatedLink(LinkParams(bandwidth_kbps=1.0, burst_s=1.0, max_queue_bits=100_000), seed=0)
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
