"""``semcomm bag``: record, inspect, decode and replay rosbag2 files of the link topics
(with ``rosbags``; no ROS install needed, and ``ros2 bag`` reads/plays the same files).

    semcomm bag record out_bag --duration 30                 # /semcomm/semantic, lowres, link_stats, keyframe_request
    semcomm bag record out_bag --topics semantic lowres decoded_labels --namespace /semcomm
    semcomm bag info out_bag
    semcomm bag decode out_bag labels.npz                    # the semantic stream's label maps, offline
    semcomm bag replay out_bag --rate 1.0                    # = ros2 run semcomm_ros bag_replay
                                                             #   --ros-args -p bag:=out_bag
    semcomm bag replay out_bag --lockstep --start-delay 2    # frame by frame into a decoder with every_frame:=true
"""

from __future__ import annotations

import json
import sys

from semcomm_ros.ros import bag


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    r = sub.add_parser("record", help="record topics from DDS into a new rosbag2 folder")
    r.add_argument("output")
    r.add_argument("--topics", nargs="+", default=["semantic", "lowres", "link_stats", "keyframe_request"],
                   help="names relative to --namespace or absolute; TOPIC:pkg/msg/Type for other types")
    r.add_argument("--namespace", default="/semcomm")
    r.add_argument("--duration", type=float, default=30.0, help="seconds")
    r.add_argument("--max-messages", type=int, default=0, help="stop after this many (0 = no limit)")
    r.add_argument("--storage", choices=["sqlite3", "mcap"], default="sqlite3")
    i = sub.add_parser("info", help="topics, types, counts, duration")
    i.add_argument("bag")
    d = sub.add_parser("decode", help="decode the semantic stream of a bag to label maps (npz)")
    d.add_argument("bag")
    d.add_argument("output", help=".npz with frame_index and labels arrays")
    d.add_argument("--topic", default="semantic")
    p = sub.add_parser("replay", help="publish a bag's link topics (the bag_replay node)")
    p.add_argument("bag")
    p.add_argument("--rate", type=float, default=1.0)
    p.add_argument("--loop", action="store_true")
    p.add_argument("--namespace", default="/semcomm")
    p.add_argument("--topics", nargs="+", default=["semantic", "lowres"])
    p.add_argument("--start-delay", type=float, default=1.0,
                   help="seconds after the subscribers matched, before the first message (default: %(default)s)")
    p.add_argument("--lockstep", action="store_true",
                   help="frame by frame, each once the decoder reported the previous one on diagnostics "
                        "(a decoder with every_frame:=true then synthesizes every frame, reproducibly)")


def run(args) -> int:
    if args.action == "record":
        topics = bag.resolve(args.topics, args.namespace)
        counts = bag.record(topics, args.output, args.duration, args.max_messages, args.storage)
        print(json.dumps({"bag": args.output, "messages": counts}, indent=1))
        return 0 if sum(counts.values()) else 1
    if args.action == "info":
        print(json.dumps(bag.info(args.bag), indent=1))
        return 0
    if args.action == "decode":
        import numpy as np

        frames = bag.decode_labels(args.bag, args.topic)
        if not frames:
            print(f"no decodable semantic frames in {args.bag}", file=sys.stderr)
            return 1
        np.savez_compressed(args.output, frame_index=np.array([i for i, _ in frames]),
                            labels=np.stack([lab for _, lab in frames]))
        print(f"{len(frames)} label maps -> {args.output}")
        return 0
    from semcomm_ros.nodes.bag_replay import main as replay_main  # deferred: rclpy; info and decode run without ROS

    ros_args = ["semcomm-bag-replay", "--ros-args", "-r", f"__ns:={args.namespace}", "-p", f"bag:={args.bag}",
                "-p", f"rate:={args.rate}", "-p", f"loop:={'true' if args.loop else 'false'}",
                "-p", f"topics:={json.dumps(args.topics)}", "-p", "exit_when_done:=true",
                "-p", f"start_delay_s:={float(args.start_delay)}",
                "-p", f"lockstep:={'true' if args.lockstep else 'false'}"]
    return replay_main(ros_args)
