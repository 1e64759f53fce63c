"""QoS profiles, chosen for a constrained robot -> operator link (see docs/ros.md).

- Link streams (``semantic``, ``lowres``): BEST_EFFORT, KEEP_LAST 8, VOLATILE. A retransmitted
  frame arrives too late to show and spends bits the 2 kbps budget does not have; the codecs
  recover from loss by themselves (semantic I-frames every P frames, low-res keyframes) and the
  decoder asks for an early one on ``keyframe_request``. Subscribers are best effort too, so they
  also match a reliable publisher (e.g. ``ros2 bag play`` defaults).
- ``keyframe_request``: RELIABLE, KEEP_LAST 4: rare, tiny, and losing one costs up to P frames.
- ``link_stats`` and decoder diagnostics: RELIABLE, KEEP_LAST 10: monitoring on the local side.
- Robot-side images (``camera/image_raw``, ``camera/labels_gt``, ``labels``): ROBOT_IMAGES,
  RELIABLE, KEEP_LAST 2. Only the newest frame matters (a queue of old frames would only add
  latency), but a 512x512 rgb8 frame (768 KiB) is larger than Fast DDS's shared-memory segment and
  goes out in UDP fragments: best effort lost 40 % of them on this machine's loopback (the robot
  side encoded 2.4 of 10 frames/s), reliable none. They stay on the robot's machine, where
  reliability costs nothing. A best-effort camera driver is not matched by a reliable
  subscriber: the nodes' image subscriptions take the standard QoS override parameters
  (``qos_overrides./semcomm/camera/image_raw.subscription.reliability: best_effort``).
- Other sensor-data topics (``camera/camera_info``): SENSOR, the sensor-data profile (BEST_EFFORT,
  KEEP_LAST 2).
- Operator outputs (``synthesized``, ``decoded_labels``, ``decoded_labels_color``,
  ``decoded_lowres``, ``camera_info``): OPERATOR_OUTPUT, RELIABLE, KEEP_LAST 2. They stay on the
  operator's machine, where reliability costs nothing, and a reliable publisher is received by
  subscribers of either kind: ROS tools' default QoS (reliable, e.g. RViz2's Image display) and the
  sensor-data profile alike; a best-effort one is invisible to the former. KEEP_LAST 2: a slow
  subscriber gets the newest frames, never a growing queue.
No queue anywhere is unbounded (no KEEP_ALL).
"""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

LINK = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=8,
                  reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE)
FEEDBACK = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=4,
                      reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
STATS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                   reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
SENSOR = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2,
                    reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE)
ROBOT_IMAGES = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2,
                          reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
OPERATOR_OUTPUT = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2,
                             reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)

BY_NAME = {"link": LINK, "feedback": FEEDBACK, "stats": STATS, "sensor": SENSOR,
           "robot_images": ROBOT_IMAGES, "operator_output": OPERATOR_OUTPUT}


def overridable(profile: QoSProfile) -> dict:
    """Keyword arguments of ``create_subscription`` that let a user override the QoS per topic with
    ROS's standard ``qos_overrides.<topic>.subscription.<policy>`` parameters (e.g. best effort for
    a camera driver that publishes best effort). rclpy writes the overrides into the profile it is
    given, so each subscription gets its own copy of the shared one."""
    import copy

    from rclpy.qos_overriding_options import QoSOverridingOptions

    return {"qos_profile": copy.copy(profile), "qos_overriding_options": QoSOverridingOptions.with_default_policies()}
