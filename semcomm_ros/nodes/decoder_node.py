"""Decoder node (operator): both link streams -> synthesized video at the camera's size.

Subscribes ``semantic`` (SemanticFrame), ``lowres`` (LowResFrame) and, when the robot sends one,
``camera/camera_info``; publishes per frame ``decoded_labels`` (mono8), ``decoded_labels_color``
(rgb8), ``decoded_lowres`` (rgb8, as received), ``synthesized`` (rgb8, the camera's size unless
``output_size`` is ``model``) with ``camera_info`` to match it, ``diagnostics`` (DecoderStats),
after a loss or a bad packet ``keyframe_request`` for the encoder and, while semantic frames are
lost on the link, ``semantic_ack`` (SemanticAck: the frames decoded, which the encoder predicts from). The images use
``qos.OPERATOR_OUTPUT`` (reliable, keep last 2): any subscriber, default QoS or sensor data, gets them.

Everything between the link and the synthesizer -- jitter buffer, frame indices, loss, stale and
restarted streams, keyframe requests, concealment, pairing the low-res frame by index, sizes --
is ``semcomm_ros.receiver.Receiver``, the same object ``system.transmit`` runs offline. This node
converts messages, runs the synthesizer in its own thread and publishes. Live, the synthesizer
takes the newest frame only (frames it cannot keep up with are skipped, latency does not grow);
with ``every_frame`` (bag replay) it synthesizes every frame in order. The noise seed of a frame is
its index from the stream's start, so a replay of a bag synthesizes the same frames.

Parameters: see docs/ros.md. The synthesizer's operating point (``lambda_c``, ``lambda_r``,
``lambda_t``, ``window``, ``num_steps``, ``strength``, ``noise``: ``SynthConfig`` fields) defaults
to the model's own (its synthesizer.json); the receiver's are ``ReceiverConfig`` fields. Each is
named as its field and takes its range and description from the config's ``RANGES`` (rclpy refuses
an out-of-range value with the reason); a change is checked as a whole new config, then swapped
in. Deprecated: ``steps`` (sets ``num_steps``, with a warning).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image

from semcomm_ros.codec.errors import BitstreamError
from semcomm_ros.msg import DecoderStats, KeyframeRequest, LowResFrame, SemanticAck, SemanticFrame
from semcomm_ros.nodes.common import (
    NAMESPACE,
    declare,
    declare_deprecated,
    declare_fields,
    route_logging,
    run,
    set_result,
)
from semcomm_ros.ranges import Range
from semcomm_ros.receiver import COUNTERS, Frame, Receiver, ReceiverConfig, model_inputs, to_camera
from semcomm_ros.ros import qos
from semcomm_ros.ros.convert import image_to_msg, lowres_from_msg, semantic_from_msg, stamp_from_ns
from semcomm_ros.scenes.classes import NUM_CLASSES, colorize
from semcomm_ros.stages import OrderedStage
from semcomm_ros.synth.config import SynthConfig

if TYPE_CHECKING:  # the synthesizer imports torch: the node loads it in its own thread
    from semcomm_ros.synth.synthesizer import Denoised

OUTPUT_SIZES = ("camera", "model")
#: frames waiting for the synthesizer with ``every_frame`` (a replay paces itself on the output)
EVERY_FRAME_QUEUE = 64
#: how often the receiver's timeouts (jitter buffer, low-res wait) are checked, s
POLL_S = 0.02

#: the SynthConfig fields declared as parameters of the same name: the operating point, default the
#: model's own (its synthesizer.json), changeable while the node runs
SYNTH_PARAMETERS = ("lambda_c", "lambda_r", "lambda_t", "window", "num_steps", "strength", "noise")
#: the ReceiverConfig fields declared as parameters of the same name
RECEIVER_PARAMETERS = ("jitter_frames", "jitter_timeout_s", "lowres_wait_s", "request_interval_s", "ack_interval_s")
#: old parameter name -> the field it sets (deprecated; removed in the next release)
RENAMED = {"steps": "num_steps"}
#: the node's own parameters (no config behind them), all fixed once it runs
NODE_PARAMETERS = {
    "device": Range("synthesizer device: auto (GPU when present), cpu, cuda, cuda:N", read_only=True),
    "model": Range("synthesizer: 'default' (shipped), 'tiny' (random, tests) or a model directory", read_only=True),
    "resolution": Range("output size of the tiny model", 16, 1024, step=8, read_only=True),
    "synthesize": Range("run the synthesizer (off: decode only)", read_only=True),
    "output_size": Range("size of 'synthesized': camera (the decoded label map's, label-guided upsampling) or "
                         "model (its native size)", choices=OUTPUT_SIZES, read_only=True),
    "every_frame": Range("synthesize every frame in order (bag replay) instead of only the newest (live)",
                         read_only=True),
}


@dataclass
class SynthesisJob:
    """A frame the receiver handed out, waiting for the synthesizer."""

    frame: Frame
    stamp_ns: int  # the capture stamp, or the decode time of a frame without one (lost)
    t_decoded_ns: int  # ROS clock
    restart: bool  # start the synthesizer afresh first (a new stream)


@dataclass
class Synthesized:
    """A synthesized frame on its way to the output stage."""

    job: SynthesisJob
    frame: np.ndarray | Denoised  # the picture at the model's size, or x_0 for the output stage to render
    config: object  # the SynthConfig it was made with (to_camera reads its consistency)
    synth_ms: float


def scaled_camera_info(info: CameraInfo, width: int, height: int, header) -> CameraInfo:
    """``info`` for the same camera seen at ``width`` x ``height`` (intrinsics scaled)."""
    out = CameraInfo()
    out.header = header
    out.width, out.height = int(width), int(height)
    sx, sy = width / max(1, info.width), height / max(1, info.height)
    k, p = list(info.k), list(info.p)
    for m in (k, p):
        row = 4 if m is p else 3
        m[0], m[2] = m[0] * sx, m[2] * sx
        m[row + 1], m[row + 2] = m[row + 1] * sy, m[row + 2] * sy
        m[1] *= sx  # skew
    out.k, out.p = k, p
    out.d, out.r, out.distortion_model = list(info.d), list(info.r), info.distortion_model
    return out


class DecoderNode(Node):
    def __init__(self):
        super().__init__("decoder_node", namespace=NAMESPACE)
        route_logging(self)
        n = NODE_PARAMETERS
        self.device = declare(self, "device", "auto", n["device"])
        self.model_name = declare(self, "model", "default", n["model"])
        self.resolution = declare(self, "resolution", 64, n["resolution"])
        self.synthesize = declare(self, "synthesize", True, n["synthesize"])
        self.output_size = declare(self, "output_size", "camera", n["output_size"])
        if self.output_size not in OUTPUT_SIZES:
            raise SystemExit(f"decoder_node: output_size must be one of {OUTPUT_SIZES}, got {self.output_size!r}")
        self.every_frame = declare(self, "every_frame", False, n["every_frame"])
        # a model directory loads in the synthesizer's thread (torch, diffusers and the weights take
        # seconds, more on a loaded CPU): label maps, the low-res frames and keyframe requests flow
        # from the start, and a restarted decoder shows the scene again before it synthesizes
        self.synth = None
        self.fatal: str | None = None  # set when the model fails to load: ``run`` exits with it
        self.runtime = self._declare_runtime()
        if self.synthesize and self.model_name == "tiny":
            self.synth = self._load_synth()  # built in-process in milliseconds
        model_config, synth_values = self._declare_operating_point()
        receiver_values = declare_fields(self, ReceiverConfig(), RECEIVER_PARAMETERS)
        synth_values.update(declare_deprecated(self, RENAMED))
        #: the operating point the parameters set, validated; the synthesizer's once it is loaded
        self.config = model_config.replace(**synth_values)
        if self.synth:
            self._check_for_model(self.config, self.synth)
            self._use(self.config)
        self.receiver = Receiver(ReceiverConfig(**receiver_values), logger=self.get_logger())
        self.add_on_set_parameters_callback(self._on_params)
        self.device_name = (str(self.synth.device) if self.synth is not None
                            else "loading" if self.synthesize else "none")
        self.lock = threading.Lock()  # the synthesizer's config against parameter changes
        self.camera_info: CameraInfo | None = None

        out = qos.OPERATOR_OUTPUT
        self.pub_labels = self.create_publisher(Image, "decoded_labels", out)
        self.pub_color = self.create_publisher(Image, "decoded_labels_color", out)
        self.pub_lowres = self.create_publisher(Image, "decoded_lowres", out)
        self.pub_synth = self.create_publisher(Image, "synthesized", out)
        self.pub_info = self.create_publisher(CameraInfo, "camera_info", out)
        self.pub_diag = self.create_publisher(DecoderStats, "diagnostics", qos.STATS)
        self.pub_request = self.create_publisher(KeyframeRequest, "keyframe_request", qos.FEEDBACK)
        self.pub_ack = self.create_publisher(SemanticAck, "semantic_ack", qos.FEEDBACK)
        self.create_subscription(SemanticFrame, "semantic", self._on_semantic, qos.LINK)
        self.create_subscription(LowResFrame, "lowres", self._on_lowres, qos.LINK)
        # best effort + volatile matches a camera_info publisher of any reliability
        self.create_subscription(CameraInfo, "camera/camera_info", self._on_camera_info, qos.SENSOR)
        # a steady clock: with use_sim_time (bag replay) a ROS-time timer would wait for /clock
        self.create_timer(POLL_S, self._poll, clock=Clock(clock_type=ClockType.STEADY_TIME))

        self.skipped = 0
        self._restart = False
        self._times: deque[float] = deque(maxlen=20)
        self._queue: deque[SynthesisJob] = deque(maxlen=EVERY_FRAME_QUEUE if self.every_frame else 1)
        self._cv = threading.Condition()
        self._stop = False
        self._output = OrderedStage(self._publish_synthesized, name="decoder output",
                                    on_error=self._output_failed) if self.synthesize else None
        self._worker = threading.Thread(target=self._synth_loop, daemon=True) if self.synthesize else None
        if self._worker:
            self._worker.start()
        size = "model" if self.output_size == "model" or not self.synthesize else "camera"
        runtime = f" ({self.synth.runtime} runtime)" if self.synth is not None else ""
        self.get_logger().info(f"decoder ready; synthesizer: {self.model_name if self.synthesize else 'off'} "
                               f"on {self.device_name}{runtime}, output at the {size}'s size"
                               + (", every frame" if self.every_frame else ""))

    # -- setup ---------------------------------------------------------------------------------
    def _load_synth(self):
        # deferred: torch and diffusers, loaded only to synthesize (in a thread of its own: decoding starts at once)
        from semcomm_ros.synth import CausalSynthesizer

        device = None if self.device == "auto" else self.device
        if self.model_name == "tiny":
            return CausalSynthesizer.tiny(resolution=self.resolution, num_classes=NUM_CLASSES, device=device,
                                          runtime=self.runtime)
        return CausalSynthesizer.from_pretrained(None if self.model_name == "default" else self.model_name,
                                                 device=device, runtime=self.runtime)

    def _load_model(self) -> None:
        """The synthesizer's thread: load the model, then apply the operating point in force."""
        t0 = time.perf_counter()
        try:
            synth = self._load_synth()
        except Exception as exc:  # noqa: BLE001 - reported, and the node exits with it
            self.fatal = f"synthesizer {self.model_name!r} could not be loaded: {type(exc).__name__}: {exc}"
            self.get_logger().error(self.fatal)
            return
        with self.lock:
            try:
                self._check_for_model(self.config, synth)
            except ValueError as exc:
                self.fatal = f"synthesizer {self.model_name!r}: {exc}"
                self.get_logger().error(self.fatal)
                return
            self.synth = synth
            self._use(self.config)  # the operating point in force, changed or not while it loaded
            self.device_name = str(synth.device)
        self.get_logger().info(f"synthesizer {self.model_name} loaded on {self.device_name} ({synth.runtime} "
                               f"runtime) in {time.perf_counter() - t0:.1f} s")

    def _declare_runtime(self) -> str:
        if self.model_name == "tiny":
            default = "torch"  # the random test model: every instance would export graphs of its own
        else:
            from semcomm_ros.synth.model import DEFAULT_MODEL_DIR  # deferred: imports torch

            path = DEFAULT_MODEL_DIR if self.model_name == "default" else self.model_name
            default = SynthConfig.load(path).runtime
        return declare(self, "runtime", default, SynthConfig.RANGES["runtime"])

    def _declare_operating_point(self):
        if self.synth:
            cfg = self.synth.config
        elif self.model_name == "tiny":
            cfg = SynthConfig()
        else:  # the model's operating point, read without its weights (loaded later, or never)
            from semcomm_ros.synth.model import DEFAULT_MODEL_DIR  # deferred: imports torch

            cfg = SynthConfig.load(DEFAULT_MODEL_DIR if self.model_name == "default" else self.model_name)
        values = declare_fields(self, cfg, SYNTH_PARAMETERS,
                                dict.fromkeys(SYNTH_PARAMETERS, " (default: the model's, from its synthesizer.json)"))
        return cfg, values

    def _check_for_model(self, config, synth) -> None:
        """What the config's ranges cannot say (the model's Temporal Adapter bounds W), once it is loaded."""
        if synth is not None:
            synth.check(config)

    def _use(self, config) -> None:
        """The synthesizer runs ``config``'s operating point from its next frame (under ``lock``).
        A new config object replaces the synthesizer's (and its model's, which share it), never
        patched in place; the KV caches, one entry per step and W-1 frames, start afresh."""
        s = self.synth
        s.use(s.config.replace(**{n: getattr(config, n) for n in SYNTH_PARAMETERS}))

    def _on_params(self, params):
        # validate, then apply: rclpy has checked the descriptors' ranges and read-only flags;
        # each new config is built and checked whole (what a range cannot say included) before
        # either is swapped in, so a refused set leaves everything as it was
        synth = {p.name: p.value for p in params if p.name in SYNTH_PARAMETERS}
        receiver = {p.name: p.value for p in params if p.name in RECEIVER_PARAMETERS}
        try:
            config = self.config.replace(**synth)
            receiver_config = self.receiver.config.replace(**receiver)
            with self.lock:
                self._check_for_model(config, self.synth)
        except (ValueError, TypeError) as exc:
            return set_result(False, str(exc))
        if synth:
            with self.lock:
                self.config = config
                if self.synth is not None:
                    self._use(config)
        self.receiver.config = receiver_config
        return set_result(True)

    def _now_ns(self) -> int:
        # the ROS clock: wall time live, the replay's /clock with use_sim_time
        return self.get_clock().now().nanoseconds

    # -- input ---------------------------------------------------------------------------------
    def _on_semantic(self, msg):
        self._on_packet(msg, "semantic", semantic_from_msg, self.receiver.push_semantic)

    def _on_lowres(self, msg):
        self._on_packet(msg, "lowres", lowres_from_msg, self.receiver.push_lowres)

    def _on_packet(self, msg, stream, parse, push):
        now = time.monotonic()
        try:
            try:
                p = parse(msg)
            except BitstreamError as exc:
                self.receiver.refuse(stream, int(msg.frame_index), str(exc), now)
            else:
                extra = {"copy_stamps_ns": p.copy_stamps_ns} if stream == "semantic" else {}
                push(p.frame_index, p.payload, now, stamp_ns=p.stamp_ns, frame_id=p.frame_id, **extra)
            self._poll()
        except Exception as exc:  # noqa: BLE001 - a packet must never take the node down
            self.receiver.counts["bad_packets"] += 1
            self.get_logger().error(f"{stream} frame dropped, unexpected {type(exc).__name__}: {exc}")

    def _on_camera_info(self, msg):
        self.camera_info = msg

    # -- output --------------------------------------------------------------------------------
    def _poll(self):
        now = time.monotonic()
        for r in self.receiver.take_requests():
            m = KeyframeRequest(last_good_frame_index=r.last_good_frame_index & 0xFFFFFFFF, reason=r.reason,
                                semantic=r.semantic, lowres=r.lowres, detail=r.detail)
            m.header.stamp = stamp_from_ns(self._now_ns())
            self.pub_request.publish(m)
        for a in self.receiver.take_acks():
            m = SemanticAck(frame_index=a.frame_index & 0xFFFFFFFF, fraction_lost=float(a.fraction_lost),
                            window_frames=int(a.window_frames))
            m.header.stamp = stamp_from_ns(self._now_ns())
            self.pub_ack.publish(m)
        for f in self.receiver.poll(now):
            self._publish_frame(f)

    def _publish_frame(self, f: Frame):
        t_decoded = self._now_ns()
        stamp = f.stamp_ns if f.stamp_ns is not None else t_decoded  # a lost frame has no capture stamp
        if f.labels_new:
            self.pub_labels.publish(image_to_msg(f.labels, "mono8", stamp, f.frame_id))
            self.pub_color.publish(image_to_msg(colorize(f.labels), "rgb8", stamp, f.frame_id))
        if f.lowres_new:
            self.pub_lowres.publish(image_to_msg(f.lowres, "rgb8", stamp, f.frame_id))
        # a new stream starts the synthesizer afresh at its first frame synthesized, which may come
        # after frames without a label map (before the first I-frame)
        self._restart = self._restart or f.restart
        job = SynthesisJob(frame=f, stamp_ns=stamp, t_decoded_ns=t_decoded, restart=self._restart)
        if not self.synthesize or f.labels is None:  # nothing to synthesize from yet
            self._publish_diag(job, None, 0.0)
            return
        self._restart = False
        with self._cv:
            if len(self._queue) == self._queue.maxlen:
                self.skipped += 1
                if self._queue[0].restart:  # the frame is dropped, not the reset it carries
                    (self._queue[1] if len(self._queue) > 1 else job).restart = True
                if self.every_frame:
                    self.get_logger().warning("synthesizer queue full: oldest frame dropped")
            self._queue.append(job)
            self._cv.notify()

    def _synth_loop(self):
        if self.synth is None:
            self._load_model()
            if self.synth is None:
                return
        while True:
            with self._cv:
                while not self._queue and not self._stop:
                    self._cv.wait(0.5)
                if self._stop:
                    return
                job = self._queue.popleft()
            f = job.frame
            try:
                with self.lock:
                    if job.restart:
                        self.synth.reset()
                    t0 = time.perf_counter()
                    frame = self.synth.denoise_frame(*self._model_inputs(f), seed=f.seed_index)
                    if not self.synth.renders_beside:
                        frame = self.synth.render(frame)
                    synth_ms = 1000 * (time.perf_counter() - t0)
                    config = self.synth.config
                # the next frame is denoised while this one is rendered, goes to the camera's size and out
                self._output.submit(Synthesized(job, frame, config, synth_ms))
            except Exception as exc:  # noqa: BLE001 - keep synthesizing the next frames
                self.get_logger().error(f"synthesis of frame {f.index} failed: {exc}")

    def _publish_synthesized(self, s: Synthesized) -> None:
        """The output stage: rendered (where the synthesizer renders beside its denoiser), to the
        camera's size, published, reported (in the synthesizer's order)."""
        job, f = s.job, s.job.frame
        t0 = time.perf_counter()
        rgb = s.frame if isinstance(s.frame, np.ndarray) else self.synth.render(s.frame, beside=True)
        if self.output_size == "camera":
            rgb = to_camera(rgb, f.labels, f.lowres, s.config)
        msg = image_to_msg(np.ascontiguousarray(rgb), "rgb8", job.stamp_ns, f.frame_id)
        self.pub_synth.publish(msg)
        if self.camera_info is not None:
            self.pub_info.publish(scaled_camera_info(self.camera_info, msg.width, msg.height, msg.header))
        self._publish_diag(job, self._now_ns(), s.synth_ms + 1000 * (time.perf_counter() - t0))

    def _output_failed(self, s: Synthesized, exc) -> None:
        self.get_logger().error(f"output of frame {s.job.frame.index} failed: {exc}")

    def _model_inputs(self, f):
        return model_inputs(f.labels, f.lowres, self.synth.output_size, self.synth.lowres_size)

    def _publish_diag(self, job: SynthesisJob, t_done, synth_ms):
        f = job.frame
        now = time.monotonic()
        self._times.append(now)
        d = DecoderStats()
        d.header.stamp = stamp_from_ns(job.stamp_ns)
        d.frame_index = f.index & 0xFFFFFFFF
        if f.stamp_ns is None:
            # no capture stamp (its semantic packet was lost): a latency of 0 here set the encoder's
            # congestion floor to 0, so that it saw a standing queue it could never drain
            d.latency_decode_ms = d.latency_total_ms = float("nan")
        else:
            d.latency_decode_ms = (job.t_decoded_ns - job.stamp_ns) / 1e6
            d.latency_total_ms = ((t_done or job.t_decoded_ns) - job.stamp_ns) / 1e6
        d.synth_ms = float(synth_ms)
        d.fps = ((len(self._times) - 1) / (self._times[-1] - self._times[0])
                 if len(self._times) > 1 and self._times[-1] > self._times[0] else 0.0)
        counts = dict(self.receiver.counts, skipped=self.skipped)
        for k in (*COUNTERS, "skipped"):
            if hasattr(d, k):
                setattr(d, k, int(counts[k]) & 0xFFFFFFFF)
        d.device = self.device_name
        self.pub_diag.publish(d)

    def close(self):
        with self._cv:
            self._stop = True
            self._cv.notify()
        if self._worker:
            self._worker.join(timeout=5)
        if self._output:
            self._output.close()


def main(args=None) -> int:
    return run(DecoderNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
