"""The rate controller and sliding window alone (no DDS): the closed loop holds a budget on a
synthetic rate model where the semantic rate falls as xi grows, as the codec's does."""

from semcomm_ros.ros.rate_control import RateController, SlidingWindow


def test_sliding_window_kbps():
    w = SlidingWindow(window_s=1.0, fps=10)
    for _ in range(25):
        w.add(200)
    assert w.frames == 10 and abs(w.kbps - 2.0) < 1e-9
    w.resize(window_s=0.5)
    assert w.frames == 5


def test_controller_converges_to_budget():
    def semantic_kbps(xi):  # bits fall roughly as 1/xi, like contour vertex counts
        return 12.0 / (1.0 + xi)

    for target in (1.0, 2.0, 3.0):
        c = RateController(target_kbps=target, xi=6.0, lowres_share=0.4)
        for _ in range(200):
            d = c.update(semantic_kbps(c.xi), c.lowres_kbps)
        total = semantic_kbps(d.xi) + d.lowres_kbps
        assert abs(total - target) < 0.05 * target, (target, total, d)


def test_controller_shrinks_lowres_when_xi_saturates():
    c = RateController(target_kbps=1.0, xi=6.0, lowres_share=0.5, xi_max=20.0)
    for _ in range(300):
        d = c.update(0.9, c.lowres_kbps)  # semantic stream cannot go lower
    assert d.xi == 20.0 and d.lowres_kbps < 0.2
