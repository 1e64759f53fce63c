"""The graph runtime (synth/runtime.py): a frame's networks as ONNX Runtime graphs, on tiny models.

Every test compares against the eager runtime on the same weights: the pictures must be the same
(within float rounding), the KV cache a state that goes in and out of the graphs, the lambdas live.
"""

from __future__ import annotations

import logging
import os
import stat
import sys

import numpy as np
import pytest
import torch

from semcomm_ros.synth import CausalSynthesizer
from semcomm_ros.synth.runtime import FrameGraphs, KVCache, cache_root, model_key

torch.set_num_threads(1)

RES = 32
W = 3


def _inputs(frames, seed=0, res=RES, classes=8):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, (frames, res, res)).astype(np.uint8)
    low = rng.integers(0, 256, (frames, res // 4, res // 4, 3)).astype(np.uint8)
    return labels, low


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx-cache")
    old = os.environ.get("SEMCOMM_CACHE_DIR")
    os.environ["SEMCOMM_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("SEMCOMM_CACHE_DIR")
    else:
        os.environ["SEMCOMM_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def pair(cache_dir):
    """The same tiny model in both runtimes (exported once for the module)."""
    onnx = CausalSynthesizer.tiny(RES, seed=0, window=W, runtime="onnx")
    assert onnx.runtime == "onnx" and onnx.graphs is not None
    return CausalSynthesizer.tiny(RES, seed=0, window=W, runtime="torch"), onnx


def _stream(synth, labels, low, output="float", change=None):
    synth.reset()
    out = []
    for k in range(len(labels)):
        if change and k in change:
            synth.config = synth.model.config = synth.config.replace(**change[k])
        out.append(synth(labels[k], low[k], seed=20 + k, output=output))
    return out


def test_onnx_frames_equal_torch_over_2w_frames_and_the_cache_state_has_fixed_shapes(pair):
    torch_synth, onnx_synth = pair
    labels, low = _inputs(2 * W)
    a = _stream(torch_synth, labels, low)
    b = _stream(onnx_synth, labels, low)
    diff = max(float((x - y).abs().max()) for x, y in zip(a, b))
    assert diff < 1e-4, diff
    pixels = [onnx_synth(labels[k], low[k], seed=20 + k) for k in range(2)]
    assert pixels[0].dtype == np.uint8 and pixels[0].shape == (RES, RES, 3)
    # every denoising step's cache has one fixed [pixels, W-1, D] pair per motion-module attention
    # (the layout the graph was exported with), all W-1 slots filled once the window is
    caches = onnx_synth.graphs.caches
    assert len(caches) == onnx_synth.config.num_steps
    spec = onnx_synth.graphs.spec
    for cache in caches:
        assert isinstance(cache, KVCache) and cache.fill == W - 1
        assert [(c.shape[0], c.shape[2]) for c in cache.tensors] == spec.cache_shapes
        assert all(c.shape[1] == W - 1 for c in cache.tensors)
    # the cache really carries the past: another first frame changes the next two in onnx too
    # (by far more than the runtimes differ: < 1e-6 here)
    other = labels.copy()
    other[0] = (other[0] + 1) % 8
    c = _stream(onnx_synth, other, low)
    assert float((c[1] - b[1]).abs().max()) > 1e-4 and float((c[2] - b[2]).abs().max()) > 1e-4


def test_onnx_streaming_equals_the_masked_clip(pair):
    torch_synth, onnx_synth = pair
    labels, low = _inputs(2 * W, seed=1)
    clip = torch_synth.generate_clip(labels, low, seeds=range(20, 20 + 2 * W), output="float")
    stream = torch.stack(_stream(onnx_synth, labels, low))
    assert float((stream - clip).abs().max()) < 1e-4


def test_lambdas_stay_live_in_the_graphs(pair):
    torch_synth, onnx_synth = pair
    labels, low = _inputs(4, seed=2)
    change = {2: {"lambda_c": 0.1, "lambda_r": 1.5, "lambda_t": 0.5, "lambda_rho": 0.3}}
    a = _stream(torch_synth, labels, low, change=change)
    b = _stream(onnx_synth, labels, low, change=change)
    for s in pair:  # back to the model's operating point
        s.config = s.model.config = s.config.replace(lambda_c=0.4, lambda_r=0.8, lambda_t=1.0, lambda_rho=1.0)
    assert max(float((x - y).abs().max()) for x, y in zip(a, b)) < 1e-4
    same = _stream(onnx_synth, labels, low)
    assert float((same[1] - b[1]).abs().max()) < 1e-6  # before the change: identical
    assert float((same[3] - b[3]).abs().max()) > 1e-3  # after: the graph read the new lambdas


def test_a_frame_without_a_degraded_frame_matches_torch(pair):
    torch_synth, onnx_synth = pair
    labels, low = _inputs(3, seed=3)
    outs = []
    for synth in pair:
        synth.reset()
        outs.append([synth(labels[0], None, seed=1, output="float"), synth(labels[1], low[1], seed=2, output="float"),
                     synth(labels[2], None, seed=3, output="float")])
    assert max(float((x - y).abs().max()) for x, y in zip(*outs)) < 1e-4


def test_a_frame_rendered_beside_the_next_ones_denoising_is_the_same_frame(pair):
    """The decoder node renders frame k on its output stage while frame k+1 is denoised: the frames
    (and the stream's state) are step()'s, in both runtimes, and a frame keeps the lambda_rho it was
    denoised with when the operating point changes before it is rendered."""
    from concurrent.futures import ThreadPoolExecutor

    labels, low = _inputs(2 * W, seed=4)
    for synth in pair:
        assert synth.renders_beside == (synth.runtime == "onnx")
        whole = _stream(synth, labels, low, output="uint8")
        synth.reset()
        with ThreadPoolExecutor(1) as beside:
            pending = [beside.submit(synth.render, synth.denoise_frame(labels[k], low[k], seed=20 + k), "uint8", True)
                       for k in range(2 * W)]
            split = [p.result() for p in pending]
        assert all(np.array_equal(a, b) for a, b in zip(whole, split)), synth.runtime
        synth.reset()
        frame = synth.denoise_frame(labels[0], low[0], seed=20)
        old = synth.config
        synth.config = synth.model.config = old.replace(lambda_rho=0.0)
        try:
            assert np.array_equal(synth.render(frame), whole[0])
        finally:
            synth.config = synth.model.config = old
    with pytest.raises(ValueError, match="render's output"):
        pair[0].render(frame, "latent")


def test_graphs_are_cached_by_the_weights_hash_and_a_read_only_model_dir_loads(pair, cache_dir, tmp_path, caplog):
    _, onnx_synth = pair
    key = model_key(onnx_synth.model, onnx_synth.dtype)
    assert (cache_root() / key / "spec.json").is_file()
    assert cache_root().parent == cache_dir
    # the same weights from a read-only model directory: the cached graphs, no export
    model_dir = tmp_path / "model"
    onnx_synth.save_pretrained(model_dir)
    for path in [model_dir, *model_dir.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    with caplog.at_level(logging.INFO, logger="semcomm_ros.synth.runtime"):
        loaded = CausalSynthesizer.from_pretrained(model_dir, runtime="onnx")
    assert loaded.runtime == "onnx" and loaded.graphs.path == cache_root() / key
    assert "exporting" not in caplog.text
    # other weights: another key, exported on load
    changed = CausalSynthesizer.tiny(RES, seed=1, window=W, runtime="torch")
    assert model_key(changed.model, changed.dtype) != key


def test_a_model_directory_without_exported_graphs_exports_on_load(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("SEMCOMM_CACHE_DIR", str(tmp_path / "cache"))
    model = CausalSynthesizer.tiny(16, seed=9, window=2)
    model_dir = model.save_pretrained(tmp_path / "model")
    with caplog.at_level(logging.INFO, logger="semcomm_ros.synth.runtime"):
        synth = CausalSynthesizer.from_pretrained(model_dir, runtime="onnx")
    assert "exporting the synthesizer's graphs" in caplog.text
    files = sorted(p.name for p in synth.graphs.path.iterdir())
    assert files == ["condition.onnx", "denoiser.onnx", "encoder.onnx", "render.onnx", "spec.json"]
    labels, low = _inputs(3, res=16)
    a = _stream(synth, labels, low)
    b = _stream(CausalSynthesizer.from_pretrained(model_dir, runtime="torch"), labels, low)
    assert max(float((x - y).abs().max()) for x, y in zip(a, b)) < 1e-4
    # a damaged cache is exported again, not trusted
    (synth.graphs.path / "render.onnx").write_bytes(b"not a graph")
    with caplog.at_level(logging.WARNING, logger="semcomm_ros.synth.runtime"):
        again = CausalSynthesizer.from_pretrained(model_dir, runtime="onnx")
    assert again.runtime == "onnx" and "unusable" in caplog.text


def test_without_onnxruntime_the_synthesizer_runs_torch_and_says_why(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with caplog.at_level(logging.WARNING, logger="semcomm_ros.synth.synthesizer"):
        synth = CausalSynthesizer.tiny(16, seed=0, runtime="onnx")
    assert synth.runtime == "torch" and synth.graphs is None
    lines = [r.getMessage() for r in caplog.records if "runtime" in r.getMessage()]
    assert len(lines) == 1 and "onnxruntime is not installed" in lines[0], lines
    labels, low = _inputs(1, res=16)
    assert synth(labels[0], low[0]).shape == (16, 16, 3)


def test_runtime_is_a_config_field_and_checked():
    from semcomm_ros.synth import SynthConfig

    assert SynthConfig().runtime == "onnx"
    assert SynthConfig.from_dict({"runtime": "torch"}).runtime == "torch"
    with pytest.raises(ValueError, match="runtime"):
        SynthConfig(runtime="tensorrt")
    with pytest.raises(ValueError, match="runtime must be one of"):
        CausalSynthesizer.tiny(16, seed=0, runtime="tvm")


def test_a_new_window_loads_graphs_for_it(pair):
    _, onnx_synth = pair
    before = onnx_synth.graphs.path
    onnx_synth.use(onnx_synth.config.replace(window=2))
    try:
        assert onnx_synth.graphs.spec.window == 2 and onnx_synth.graphs.path != before
        labels, low = _inputs(3, seed=4)
        out = _stream(onnx_synth, labels, low)
        assert all(c.fill == 1 for c in onnx_synth.graphs.caches) and len(out) == 3
    finally:
        onnx_synth.use(onnx_synth.config.replace(window=W))
    assert onnx_synth.graphs.path == before


def test_frame_graphs_refuse_a_missing_runtime_clearly(monkeypatch):
    from semcomm_ros.synth.runtime import RuntimeUnavailable

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    model = CausalSynthesizer.tiny(16, seed=0).model
    with pytest.raises(RuntimeUnavailable, match="onnxruntime is not installed"):
        FrameGraphs.load(model, torch.device("cpu"), torch.float32)
