"""rosbag2 files of the link topics, written and read with ``rosbags`` (pure Python: no ROS
install needed; the files are ordinary rosbag2 bags that ``ros2 bag`` reads too).

Messages are stored exactly as they crossed DDS (the serialized CDR bytes of a raw rclpy
subscription), and replayed as those bytes, so a replay is bit-for-bit the recorded traffic.
"""

from __future__ import annotations

import time
from pathlib import Path

from semcomm_ros.ros.topic import msg_class

LINK_TOPICS = {
    "semantic": "semcomm_ros/msg/SemanticFrame",
    "lowres": "semcomm_ros/msg/LowResFrame",
    "link_stats": "semcomm_ros/msg/LinkStats",
    "keyframe_request": "semcomm_ros/msg/KeyframeRequest",
}
OPERATOR_TOPICS = {
    "decoded_labels": "sensor_msgs/msg/Image",
    "decoded_labels_color": "sensor_msgs/msg/Image",
    "decoded_lowres": "sensor_msgs/msg/Image",
    "synthesized": "sensor_msgs/msg/Image",
    "camera_info": "sensor_msgs/msg/CameraInfo",
    "diagnostics": "semcomm_ros/msg/DecoderStats",
}


def msg_dir() -> Path:
    """The package's .msg files: the source tree, or share/semcomm_ros/msg of an install."""
    src = Path(__file__).resolve().parents[2] / "msg"
    if src.is_dir():
        return src
    from ament_index_python.packages import get_package_share_directory

    return Path(get_package_share_directory("semcomm_ros")) / "msg"


def typestore():
    """The ROS 2 Kilted type store plus this package's messages (registered from msg/)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for f in sorted(msg_dir().glob("*.msg")):
        types.update(get_types_from_msg(f.read_text(), f"semcomm_ros/msg/{f.stem}"))
    store.register(types)
    return store


def resolve(topics: list[str], namespace: str) -> dict[str, str]:
    """Topic names (relative to ``namespace`` or absolute) -> {absolute topic: type}."""
    known = {**LINK_TOPICS, **OPERATOR_TOPICS}
    out = {}
    for t in topics:
        name, _, typ = t.partition(":")
        base = name.rsplit("/", 1)[-1]
        typ = typ or known.get(base)
        if not typ:
            raise ValueError(f"unknown type for topic {name!r}: give it as TOPIC:pkg/msg/Type")
        full = name if name.startswith("/") else f"{namespace.rstrip('/')}/{name}"
        out[full] = typ
    return out


def record(topics: dict[str, str], path: str | Path, duration: float, max_messages: int = 0,
           storage: str = "sqlite3") -> dict[str, int]:
    """Subscribe (raw CDR) to ``topics`` and write a rosbag2 at ``path`` for ``duration`` seconds."""
    import rclpy
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from rosbags.rosbag2 import StoragePlugin, Writer

    store = typestore()
    path = Path(path)
    if path.exists():
        raise ValueError(f"{path} exists; rosbag2 writes a new folder")
    plugin = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}[storage]
    # best effort matches reliable and best-effort publishers alike; depth bounds the backlog
    q = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=64, reliability=ReliabilityPolicy.BEST_EFFORT)
    counts = {t: 0 for t in topics}
    own_init = not rclpy.ok()
    if own_init:
        rclpy.init()
    node = rclpy.create_node(f"semcomm_bag_record_{int(time.time() * 1000) % 100000}")
    try:
        with Writer(path, version=9, storage_plugin=plugin) as writer:
            conns = {t: writer.add_connection(t, typ, typestore=store) for t, typ in topics.items()}
            for t, typ in topics.items():
                def cb(data, t=t):
                    writer.write(conns[t], time.time_ns(), data)
                    counts[t] += 1
                node.create_subscription(msg_class(typ), t, cb, q, raw=True)
            end = time.monotonic() + duration
            while time.monotonic() < end and not (max_messages and sum(counts.values()) >= max_messages):
                rclpy.spin_once(node, timeout_sec=0.05)
    finally:
        node.destroy_node()
        if own_init:
            rclpy.try_shutdown()
    return counts


def read(path: str | Path, topics: list[str] | None = None):
    """Yield ``(topic, msgtype, timestamp_ns, cdr_bytes)`` in recorded order."""
    from rosbags.rosbag2 import Reader

    with Reader(Path(path)) as reader:
        conns = [c for c in reader.connections
                 if topics is None or c.topic in topics or c.topic.rsplit("/", 1)[-1] in topics]
        for conn, t, data in reader.messages(connections=conns):
            yield conn.topic, conn.msgtype, t, bytes(data)


def info(path: str | Path) -> dict:
    from rosbags.rosbag2 import Reader

    with Reader(Path(path)) as reader:
        return {"duration_s": reader.duration / 1e9 if reader.message_count else 0.0,
                "messages": reader.message_count,
                "topics": {c.topic: {"type": c.msgtype, "count": c.msgcount} for c in reader.connections}}


def deserialize(data: bytes, msgtype: str):
    """CDR bytes -> the rclpy message (through rclpy's own deserializer)."""
    from rclpy.serialization import deserialize_message

    return deserialize_message(data, msg_class(msgtype))


def decode_labels(path: str | Path, topic: str = "semantic"):
    """Decode the semantic stream of a bag offline (no DDS): ``[(frame_index, labels)]``, with
    the decoder node's loss rules (stale frames dropped, a gap waits for the next I-frame)."""
    # deferred: the codec loads numpy, OpenCV and constriction; `semcomm bag info/record` need none of them
    from semcomm_ros.codec import BitstreamError, SemanticDecoder
    from semcomm_ros.ros.convert import semantic_from_msg  # deferred: as the codec above

    dec, last, out = SemanticDecoder(), None, []
    for _, msgtype, _, data in read(path, [topic]):
        msg = deserialize(data, msgtype)
        index = int(msg.frame_index)
        if last is not None and index <= last:
            continue
        try:
            p = semantic_from_msg(msg)
        except BitstreamError:
            continue
        if last is not None and index > last + 1:
            dec.reset()
        last = index
        try:
            out.append((index, dec.decode(p.payload)))
        except BitstreamError:
            continue
    return out
