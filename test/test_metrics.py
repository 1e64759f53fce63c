"""Metrics against known values: identical images, known noise, hand-computed cases."""

import math

import cv2
import numpy as np
import pytest

from semcomm_ros.eval.metrics import (
    bits,
    bpp,
    class_iou,
    dists,
    flicker,
    kbps,
    lpips,
    miou,
    ms_ssim,
    ms_ssim_scales,
    perceptual_status,
    psnr,
    segmentation_miou,
    window_kbps,
)


def _image(h=192, w=192, seed=0):
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3)).astype(np.uint8), (0, 0), 2)


def test_psnr_identical_is_inf():
    a = _image()
    assert psnr(a, a) == math.inf


def test_psnr_of_uniform_pm_e_noise():
    # every pixel off by exactly +-e: MSE = e^2, PSNR = 20 log10(255 / e)
    a = np.full((64, 64, 3), 128, np.uint8)
    rng = np.random.default_rng(1)
    for e in (1, 4, 16):
        b = (a.astype(int) + e * rng.choice([-1, 1], a.shape)).astype(np.uint8)
        assert psnr(b, a) == pytest.approx(20 * math.log10(255 / e), abs=1e-9)


def test_psnr_video_is_mean_of_frames():
    a = np.full((2, 32, 32, 3), 100, np.uint8)
    b = a.copy()
    b[0] += 1
    b[1] += 10
    expected = (20 * math.log10(255 / 1) + 20 * math.log10(255 / 10)) / 2
    assert psnr(b, a) == pytest.approx(expected)


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="shape mismatch"):
        psnr(np.zeros((4, 4, 3)), np.zeros((4, 5, 3)))


def test_ms_ssim_identical_is_one():
    a = _image(256, 256)
    assert ms_ssim(a, a) == pytest.approx(1.0, abs=1e-6)


def test_ms_ssim_monotone_in_noise():
    a = _image(256, 256)
    rng = np.random.default_rng(2)
    scores = [ms_ssim(np.clip(a + rng.normal(0, s, a.shape), 0, 255).astype(np.uint8), a)
              for s in (1, 4, 10, 25, 60)]
    assert all(x > y for x, y in zip(scores, scores[1:])), scores
    assert 0.0 <= scores[-1] < 0.6 and scores[0] > 0.99


def test_ms_ssim_constant_images_hand_computed():
    # flat images: every contrast-structure term is 1, only the coarsest luminance term is left
    a = np.full((200, 200), 100, np.uint8)
    b = np.full((200, 200), 120, np.uint8)
    c1 = (0.01 * 255) ** 2
    lum = (2 * 100 * 120 + c1) / (100**2 + 120**2 + c1)
    w = 0.1333 / sum((0.0448, 0.2856, 0.3001, 0.2363, 0.1333))
    assert ms_ssim(a, b) == pytest.approx(lum**w, abs=1e-4)


def test_ms_ssim_scales_for_small_images():
    assert ms_ssim_scales(512, 512) == 5
    assert ms_ssim_scales(176, 176) == 5
    assert ms_ssim_scales(160, 160) == 4  # 1/16 scale would be 10 px < 11-px window
    assert ms_ssim_scales(128, 128) == 4
    a = _image(128, 128)
    assert ms_ssim(a, a) == pytest.approx(1.0, abs=1e-6)
    assert ms_ssim(np.clip(a.astype(int) + 20, 0, 255), a) < 1.0
    with pytest.raises(ValueError, match="smaller than"):
        ms_ssim(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)))


def test_miou_hand_computed():
    gt = np.array([[0, 0, 1, 1],
                   [0, 0, 1, 1]])
    pred = np.array([[0, 0, 0, 1],
                     [0, 0, 1, 1]])
    # class 0: inter 4, union 5; class 1: inter 3, union 4
    assert miou(pred, gt) == pytest.approx((4 / 5 + 3 / 4) / 2)
    assert miou(gt, gt) == 1.0
    # a class only predicted counts with IoU 0; a class in neither is not averaged
    pred2 = gt.copy()
    pred2[0, 0] = 2
    assert miou(pred2, gt, num_classes=5) == pytest.approx((3 / 4 + 1 + 0) / 3)
    assert miou(np.zeros((2, 2), int), np.ones((2, 2), int)) == 0.0


def test_class_iou_per_class_and_its_mean_is_miou():
    gt = np.array([[0, 0, 1, 1],
                   [0, 0, 1, 1]], np.uint8)
    pred = np.array([[0, 0, 0, 1],
                     [0, 2, 1, 1]], np.uint8)
    # class 0: inter 3, union 5; class 1: inter 3, union 4; class 2: only predicted; 3..: in neither
    ious = class_iou(pred, gt, num_classes=8)
    assert ious == {0: pytest.approx(3 / 5), 1: pytest.approx(3 / 4), 2: 0.0}
    assert miou(pred, gt) == np.mean(list(ious.values()))


def test_miou_pools_frames_and_ignores_index():
    gt = np.array([[[1, 1], [0, 0]], [[1, 1], [1, 1]]])
    pred = np.array([[[1, 0], [0, 0]], [[1, 1], [1, 1]]])
    # pooled class 1: inter 5, union 6; class 0: inter 2, union 3
    assert miou(pred, gt) == pytest.approx((5 / 6 + 2 / 3) / 2)
    # ignoring the gt-0 pixels leaves class 1 (5/6) and one pixel wrongly called 0 (IoU 0)
    assert miou(pred, np.where(gt == 0, 255, gt), ignore_index=255) == pytest.approx(5 / 12)
    with pytest.raises(ValueError, match="label shape"):
        miou(pred[0], gt)


def test_segmentation_miou_uses_the_given_function():
    frames = [np.full((8, 8, 3), v, np.uint8) for v in (10, 200)]

    def segment(rgb):  # a thresholding "segmenter"
        return (rgb[..., 0] > 100).astype(np.uint8)

    labels = [np.zeros((8, 8), np.uint8), np.ones((8, 8), np.uint8)]
    assert segmentation_miou(segment, frames, reference_labels=labels) == 1.0
    assert segmentation_miou(segment, frames, reference_frames=frames[::-1]) == 0.0
    with pytest.raises(ValueError, match="exactly one"):
        segmentation_miou(segment, frames)


def test_flicker_known_cases():
    rng = np.random.default_rng(3)
    g = rng.integers(0, 200, (5, 16, 16, 3)).astype(np.uint8)
    assert flicker(g, g) == 0.0
    assert flicker(g + 20, g) == 0.0  # constant offset: no flicker
    s = g.astype(int).copy()
    s[1::2] += 6  # +6 on every other frame: every difference is off by 6
    assert flicker(s, g) == pytest.approx(6.0)
    with pytest.raises(ValueError, match="two frames"):
        flicker(g[:1], g[:1])


def test_rate_helpers():
    assert bits([b"abc", b"", b"de"]) == 40
    assert kbps(10240, 100, 10) == pytest.approx(1.0)
    # the paper's operating point: 1 kbps at 512x512, 10 fps = 0.00039 bpp ("0.0003" truncated)
    assert bpp(1, 512, 512, 10) == pytest.approx(0.000390625)
    w = window_kbps([1024] * 100 + [0] * 50, fps=10, window_s=10)
    assert w[0] == pytest.approx(10.0) and w[-1] == pytest.approx(5.0)
    assert len(w) == 51


def test_perceptual_metrics_say_not_available_without_weights(monkeypatch, tmp_path):
    for k in ("SEMCOMM_LPIPS_BACKBONE", "SEMCOMM_LPIPS_LIN", "SEMCOMM_DISTS_BACKBONE",
              "SEMCOMM_DISTS_WEIGHTS"):
        monkeypatch.delenv(k, raising=False)
    a = _image(64, 64)
    value, reason = lpips(a, a)
    assert value is None and "LPIPS not available" in reason
    value, reason = dists(a, a, backbone=str(tmp_path / "missing.pth"), weights="x")
    assert value is None and "not found" in reason
    assert perceptual_status()["dists"].startswith("DISTS not available")


def test_lpips_and_dists_from_local_weight_files(tmp_path):
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    # weights with the real layout (random values: the computation, not the calibration,
    # is what is checked here; no download is possible or attempted)
    torch.save(torchvision.models.alexnet().features.state_dict(), tmp_path / "alex_backbone.pth")
    chans = (64, 192, 384, 256, 256)
    torch.save({f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate(chans)},
               tmp_path / "alex_lin.pth")
    a = _image(64, 64)
    b = np.clip(a.astype(int) + np.random.default_rng(4).normal(0, 30, a.shape), 0, 255)
    same, why = lpips(a, a, backbone=str(tmp_path / "alex_backbone.pth"),
                      lin=str(tmp_path / "alex_lin.pth"))
    assert why is None and same == pytest.approx(0.0, abs=1e-9)
    diff, _ = lpips(b.astype(np.uint8), a, backbone=str(tmp_path / "alex_backbone.pth"),
                    lin=str(tmp_path / "alex_lin.pth"))
    assert diff > 0

    from torchvision.models.vgg import cfgs, make_layers

    torch.save(make_layers(cfgs["D"]).state_dict(), tmp_path / "vgg.pth")  # features only
    n = 3 + 64 + 128 + 256 + 512 + 512
    torch.save({"alpha": torch.rand(1, n, 1, 1), "beta": torch.rand(1, n, 1, 1)},
               tmp_path / "dists.pt")
    same, why = dists(a, a, backbone=str(tmp_path / "vgg.pth"), weights=str(tmp_path / "dists.pt"))
    assert why is None and same == pytest.approx(0.0, abs=1e-5)
    diff, _ = dists(b.astype(np.uint8), a, backbone=str(tmp_path / "vgg.pth"),
                    weights=str(tmp_path / "dists.pt"))
    assert diff > same
    bad, why = lpips(a, a, backbone=str(tmp_path / "vgg.pth"), lin=str(tmp_path / "alex_lin.pth"))
    assert bad is None and "do not load" in why
