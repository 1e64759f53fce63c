"""Decoder node (operator): both link streams -> synthesized video.

Subscribes ``semantic`` (SemanticFrame) and ``lowres`` (LowResFrame); publishes
``decoded_labels`` (mono8) and ``decoded_lowres`` (rgb8) as soon as a frame decodes, then
``synthesized`` (rgb8) from the causal synthesizer, ``diagnostics`` (DecoderStats) and, after a
loss or a bad packet, ``keyframe_request`` for the encoder.

Robustness (the link is lossy, late, reordering, and may carry garbage):
- a message whose fields contradict its payload, or whose payload does not decode, is logged,
  counted (``bad_packets``) and dropped; nothing a packet contains can stop the node;
- frames are numbered (32 bit): an index at or below the last one decoded is stale (late or
  reordered) and dropped; a gap is a loss: the semantic decoder restarts and waits for the next
  I-frame, the low-res decoder for the next keyframe, and one keyframe request goes out (at most
  every ``request_interval_s``) instead of waiting up to P frames;
- the synthesizer runs in its own thread on the newest decoded frame only (a one-slot queue:
  frames it cannot keep up with are skipped, latency does not grow).
Parameters: ``device`` (auto/cpu/cuda), ``model`` ("default" = shipped model, "tiny" = random
tiny model for tests, or a model directory), ``resolution`` (tiny model only), ``lambda_c``,
``lambda_r``, ``lambda_t``, ``window``, ``steps``, ``strength`` (run-time changeable), ``synthesize``.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image

from semcomm_ros.codec.errors import BitstreamError
from semcomm_ros.msg import DecoderStats, KeyframeRequest, LowResFrame, SemanticFrame
from semcomm_ros.nodes.common import NAMESPACE, check_params, declare, in_range, one_of, run, set_result
from semcomm_ros.ros import qos
from semcomm_ros.ros.convert import image_to_msg, lowres_from_msg, semantic_from_msg, stamp_from_ns


# Reordering on the link moves a frame back by a few positions; a frame this far behind the last
# one means the encoder restarted its count.
RESTART_BACKJUMP = 50


class DecoderNode(Node):
    def __init__(self):
        super().__init__("decoder_node", namespace=NAMESPACE)
        self.device = declare(self, "device", "auto", "synthesizer device: auto (GPU when present), cpu, "
                              "cuda, cuda:N", read_only=True)
        self.model_name = declare(self, "model", "default", "synthesizer: 'default' (shipped), 'tiny' "
                                  "(random, tests) or a model directory", read_only=True)
        self.resolution = declare(self, "resolution", 64, "output size of the tiny model", 16, 1024, 8,
                                  read_only=True)
        self.synthesize = declare(self, "synthesize", True, "run the synthesizer (off: decode only)",
                                  read_only=True)
        self.lambdas = {
            "lambda_c": declare(self, "lambda_c", 0.7, "Semantic Control weight lambda_C (shipped model's "
                                "operating point; paper 0.4)", 0.0, 4.0),
            "lambda_r": declare(self, "lambda_r", 0.8, "Restoration Adapter weight lambda_R", 0.0, 4.0),
            "lambda_t": declare(self, "lambda_t", 1.0, "Temporal Adapter weight lambda_T", 0.0, 4.0),
        }
        self.window = declare(self, "window", 3, "causal temporal window W, frames", 1, 16)
        self.steps = declare(self, "steps", 4, "denoising steps T", 1, 50)
        self.strength = declare(self, "strength", 1.0, "share of the T steps run, starting from the received "
                                "low-res frame (1 = from pure noise, as in the paper)", 0.05, 1.0)
        self.request_interval_s = declare(self, "request_interval_s", 0.5,
                                          "minimum time between keyframe requests, s", 0.0, 60.0)
        self.add_on_set_parameters_callback(self._on_params)

        from semcomm_ros.codec import LowResDecoder, SemanticDecoder

        self.sem_dec, self.low_dec = SemanticDecoder(), LowResDecoder()
        self.synth = self._load_synth() if self.synthesize else None
        self.device_name = str(self.synth.device) if self.synth is not None else "none"
        self.lock = threading.Lock()  # guards the synthesizer's config against parameter changes

        self.pub_labels = self.create_publisher(Image, "decoded_labels", qos.SENSOR)
        self.pub_lowres = self.create_publisher(Image, "decoded_lowres", qos.SENSOR)
        self.pub_synth = self.create_publisher(Image, "synthesized", qos.SENSOR)
        self.pub_diag = self.create_publisher(DecoderStats, "diagnostics", qos.STATS)
        self.pub_request = self.create_publisher(KeyframeRequest, "keyframe_request", qos.FEEDBACK)
        self.create_subscription(SemanticFrame, "semantic", self._on_semantic, qos.LINK)
        self.create_subscription(LowResFrame, "lowres", self._on_lowres, qos.LINK)

        self.last_sem: int | None = None  # frame index of the last semantic frame decoded or lost
        self.last_good = 0
        self.last_low: int | None = None
        self.lowres_frame: np.ndarray | None = None
        self.counts = dict(frames=0, lost=0, stale=0, bad_packets=0, waiting_for_keyframe=0,
                           keyframe_requests=0, decoded=0)
        self._last_request = -1e9
        self._times: deque[float] = deque(maxlen=20)
        self._slot = None  # newest decoded frame waiting for the synthesizer
        self._cv = threading.Condition()
        self._stop = False
        self._worker = threading.Thread(target=self._synth_loop, daemon=True) if self.synth else None
        if self._worker:
            self._worker.start()
        self.get_logger().info(f"decoder ready; synthesizer: {self.model_name if self.synth else 'off'} "
                               f"on {self.device_name}")

    # -- setup ---------------------------------------------------------------------------------
    def _load_synth(self):
        from semcomm_ros.scenes import NUM_CLASSES
        from semcomm_ros.synth import CausalSynthesizer

        device = None if self.device == "auto" else self.device
        if self.model_name == "tiny":
            s = CausalSynthesizer.tiny(resolution=self.resolution, num_classes=NUM_CLASSES, device=device)
        elif self.model_name == "default":
            s = CausalSynthesizer.from_pretrained(None, device=device)
        else:
            s = CausalSynthesizer.from_pretrained(self.model_name, device=device)
        for k, v in self.lambdas.items():
            setattr(s.config, k, float(v))
        s.config.window, s.config.num_steps = int(self.window), int(self.steps)
        s.config.strength = float(self.strength)
        s.config.validate()
        s.reset()
        return s

    def _on_params(self, params):
        checks = {k: in_range(0.0, 4.0) for k in self.lambdas}
        checks.update(window=in_range(1, 16), steps=in_range(1, 50), strength=in_range(0.05, 1.0),
                      request_interval_s=in_range(0.0, 60.0),
                      device=one_of(self.device), model=one_of(self.model_name))
        ok, reason = check_params(params, checks)
        if not ok:
            return set_result(False, reason)
        with self.lock:
            for p in params:
                if p.name in self.lambdas:
                    self.lambdas[p.name] = float(p.value)
                    if self.synth:
                        setattr(self.synth.config, p.name, float(p.value))
                elif p.name in ("window", "steps"):
                    setattr(self, p.name, int(p.value))
                    if self.synth:
                        setattr(self.synth.config, "window" if p.name == "window" else "num_steps", int(p.value))
                        self.synth.reset()  # the KV caches hold one entry per step and W-1 frames
                elif p.name == "strength":
                    self.strength = float(p.value)
                    if self.synth:
                        self.synth.config.strength = self.strength
                        self.synth.reset()  # the steps that run change, and with them the KV caches
                elif p.name == "request_interval_s":
                    self.request_interval_s = float(p.value)
        return set_result(True)

    # -- feedback ------------------------------------------------------------------------------
    def _request(self, reason: int, semantic: bool, lowres: bool, detail: str):
        now = time.monotonic()
        if now - self._last_request < self.request_interval_s:
            return
        self._last_request = now
        self.counts["keyframe_requests"] += 1
        m = KeyframeRequest(last_good_frame_index=self.last_good, reason=reason, semantic=semantic,
                            lowres=lowres, detail=detail[:200])
        m.header.stamp = stamp_from_ns(time.time_ns())
        self.pub_request.publish(m)

    # -- semantic stream -----------------------------------------------------------------------
    def _on_semantic(self, msg):
        try:
            self._semantic(msg)
        except Exception as exc:  # noqa: BLE001 - a packet must never take the node down
            self.counts["bad_packets"] += 1
            self.get_logger().error(f"semantic frame dropped, unexpected {type(exc).__name__}: {exc}")

    def _semantic(self, msg):
        from semcomm_ros.codec.packet import FrameLostError

        index = int(msg.frame_index)
        if self.last_sem is not None and index <= self.last_sem - RESTART_BACKJUMP:
            # far behind, not reordered: the encoder restarted (index from 0); follow it
            self.get_logger().warning(f"semantic frame {index} after {self.last_sem}: stream restarted")
            self.last_sem = None
            self.sem_dec.reset()
        if self.last_sem is not None and index <= self.last_sem:
            self.counts["stale"] += 1
            self.get_logger().debug(f"stale semantic frame {index} (last {self.last_sem}) dropped")
            return
        try:
            p = semantic_from_msg(msg)
        except BitstreamError as exc:
            self.counts["bad_packets"] += 1
            self.get_logger().warning(f"bad semantic frame {index}: {exc}")
            self._request(KeyframeRequest.REASON_CORRUPT, True, False, f"semantic frame {index}: {exc}")
            return
        if self.last_sem is not None and index > self.last_sem + 1:
            gap = index - self.last_sem - 1
            self.counts["lost"] += gap
            self.get_logger().warning(f"{gap} semantic frame(s) lost before frame {index}")
            # the codec sees the index only modulo 16: a gap of 16 would look seamless to it
            self.sem_dec.reset()
        self.last_sem = index
        try:
            labels = self.sem_dec.decode(p.payload)
        except FrameLostError as exc:
            self.counts["waiting_for_keyframe"] += 1
            self.get_logger().info(f"frame {index}: {exc}")
            self._request(KeyframeRequest.REASON_LOSS if self.counts["decoded"] else
                          KeyframeRequest.REASON_STARTUP, True, False, str(exc))
            return
        except BitstreamError as exc:
            self.counts["bad_packets"] += 1
            self.sem_dec.reset()
            self.get_logger().warning(f"undecodable semantic frame {index}: {exc}")
            self._request(KeyframeRequest.REASON_CORRUPT, True, False, f"semantic frame {index}: {exc}")
            return
        self.counts["decoded"] += 1
        self.last_good = index
        t_decoded = time.time_ns()
        self.pub_labels.publish(image_to_msg(labels, "mono8", p.stamp_ns, p.frame_id))
        item = dict(index=index, stamp=p.stamp_ns, frame_id=p.frame_id, labels=labels,
                    lowres=self.lowres_frame, t_decoded=t_decoded)
        if self.synth is None:
            self._publish_diag(item, None, 0.0)
            return
        with self._cv:
            if self._slot is not None:
                self.counts["skipped"] = self.counts.get("skipped", 0) + 1
            self._slot = item
            self._cv.notify()

    # -- low-res stream ------------------------------------------------------------------------
    def _on_lowres(self, msg):
        try:
            self._lowres(msg)
        except Exception as exc:  # noqa: BLE001
            self.counts["bad_packets"] += 1
            self.get_logger().error(f"low-res frame dropped, unexpected {type(exc).__name__}: {exc}")

    def _lowres(self, msg):
        index = int(msg.frame_index)
        if self.last_low is not None and index <= self.last_low - RESTART_BACKJUMP:
            self.last_low = None  # the encoder restarted; its next keyframe starts the stream
        if self.last_low is not None and index <= self.last_low:
            self.counts["stale"] += 1
            return
        try:
            p = lowres_from_msg(msg)
            self.last_low = index
            frame = self.low_dec.decode(p.payload)
        except BitstreamError as exc:
            self.counts["bad_packets"] += 1
            self.get_logger().warning(f"bad low-res frame {index}: {exc}")
            self._request(KeyframeRequest.REASON_CORRUPT, False, True, f"low-res frame {index}: {exc}")
            return
        if frame is None:
            if self.low_dec.needs_keyframe:
                self.counts["waiting_for_keyframe"] += 1
                self._request(KeyframeRequest.REASON_LOSS, False, True,
                              f"low-res frame {index}: waiting for a keyframe")
            return
        self.lowres_frame = frame
        self.pub_lowres.publish(image_to_msg(frame, "rgb8", p.stamp_ns, p.frame_id))

    # -- synthesis -----------------------------------------------------------------------------
    def _fit(self, labels, lowres):
        import cv2

        h, w = self.synth.output_size
        if labels.shape != (h, w):
            labels = cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST)
        if lowres is not None:
            lh, lw = self.synth.lowres_size
            if lowres.shape[:2] != (lh, lw):
                lowres = cv2.resize(lowres, (lw, lh), interpolation=cv2.INTER_AREA)
        return labels, lowres

    def _synth_loop(self):
        while True:
            with self._cv:
                while self._slot is None and not self._stop:
                    self._cv.wait(0.5)
                if self._stop:
                    return
                item, self._slot = self._slot, None
            try:
                with self.lock:
                    labels, lowres = self._fit(item["labels"], item["lowres"])
                    t0 = time.perf_counter()
                    rgb = self.synth.step(labels, lowres, seed=item["index"])
                    synth_ms = 1000 * (time.perf_counter() - t0)
                self.pub_synth.publish(image_to_msg(np.ascontiguousarray(rgb), "rgb8", item["stamp"],
                                                    item["frame_id"]))
                self._publish_diag(item, time.time_ns(), synth_ms)
            except Exception as exc:  # noqa: BLE001 - keep synthesizing the next frames
                self.get_logger().error(f"synthesis of frame {item['index']} failed: {exc}")

    def _publish_diag(self, item, t_done, synth_ms):
        now = time.monotonic()
        self._times.append(now)
        self.counts["frames"] += 1
        d = DecoderStats()
        d.header.stamp = stamp_from_ns(item["stamp"])
        d.frame_index = item["index"]
        d.latency_decode_ms = (item["t_decoded"] - item["stamp"]) / 1e6
        d.latency_total_ms = ((t_done or item["t_decoded"]) - item["stamp"]) / 1e6
        d.synth_ms = float(synth_ms)
        d.fps = ((len(self._times) - 1) / (self._times[-1] - self._times[0])
                 if len(self._times) > 1 and self._times[-1] > self._times[0] else 0.0)
        for k in ("frames", "lost", "stale", "bad_packets", "waiting_for_keyframe", "keyframe_requests"):
            setattr(d, k, int(self.counts[k]))
        d.device = self.device_name
        self.pub_diag.publish(d)

    def close(self):
        with self._cv:
            self._stop = True
            self._cv.notify()
        if self._worker:
            self._worker.join(timeout=5)


def main(args=None) -> int:
    return run(DecoderNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
