"""One set of defaults on the operator side: the decoder's and the bag replay's declared defaults
equal config/operator.yaml and config/replay.yaml, and the decoder's operating point is its
model's (synthesizer.json), not a second copy of the numbers. Real rclpy nodes, built in this
process."""

from __future__ import annotations

import pytest
import yaml

from rosutil import have_interfaces
from test_ros_defaults import ROOT, ROS_OWN, ros

pytestmark = pytest.mark.skipif(not have_interfaces(),
                                reason="msg/ interfaces not built: run scripts/build_interfaces.sh")


def _declared(node) -> dict:
    try:
        return {n: p.value for n, p in node._parameters.items() if n not in ROS_OWN}
    finally:
        close = getattr(node, "close", None)
        if close:
            close()
        node.destroy_node()


def _yaml(name: str, node: str) -> dict:
    return yaml.safe_load((ROOT / "config" / name).read_text())[f"/**/{node}"]["ros__parameters"]


def test_decoder_defaults_are_operator_yaml_and_the_models_operating_point():
    from semcomm_ros.synth.config import SynthConfig
    from semcomm_ros.synth.model import DEFAULT_MODEL_DIR

    params = _yaml("operator.yaml", "decoder_node")
    # decode only: the node reads the model's operating point from its synthesizer.json, no weights
    with ros("-p", "synthesize:=false"):
        from semcomm_ros.nodes.decoder_node import RENAMED, DecoderNode

        declared = _declared(DecoderNode())
    model = SynthConfig.load(DEFAULT_MODEL_DIR)
    operating_point = {"lambda_c": model.lambda_c, "lambda_r": model.lambda_r, "lambda_t": model.lambda_t,
                       "window": model.window, "num_steps": model.num_steps, "strength": model.strength,
                       "noise": model.noise, "runtime": model.runtime}
    assert {k: declared[k] for k in operating_point} == operating_point
    assert not set(params) & set(operating_point), "operator.yaml repeats the model's operating point"
    missing = set(declared) - set(params) - set(operating_point) - set(RENAMED)  # deprecated names: in no YAML
    assert not missing, f"operator.yaml leaves out {missing}"
    differ = {k: (declared[k], v) for k, v in params.items() if k != "synthesize" and declared[k] != v}
    assert not differ, f"decoder_node: declared default != operator.yaml (declared, yaml): {differ}"


def test_bag_replay_defaults_are_replay_yaml(tmp_path):
    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import Writer

    from semcomm_ros.msg import SemanticFrame
    from semcomm_ros.ros.bag import typestore

    path = tmp_path / "bag"
    with Writer(path, version=9) as writer:
        conn = writer.add_connection("/semcomm/semantic", "semcomm_ros/msg/SemanticFrame", typestore=typestore())
        writer.write(conn, 1, serialize_message(SemanticFrame()))
    params = _yaml("replay.yaml", "bag_replay")
    with ros("-p", f"bag:={path}"):
        from semcomm_ros.nodes.bag_replay import BagReplay

        declared = _declared(BagReplay())
    declared.pop("bag")  # required, no default
    assert set(declared) == set(params), (set(declared) ^ set(params))
    differ = {k: (declared[k], v) for k, v in params.items() if declared[k] != v}
    assert not differ, f"bag_replay: declared default != replay.yaml (declared, yaml): {differ}"


def test_decoder_takes_a_parameter_set_whole_or_not_at_all():
    """Validate, then apply: a set with one bad value changes nothing; a good one gives the
    synthesizer a new config object (its model's too), never the old one patched."""
    from rclpy.parameter import Parameter

    with ros("-p", "model:=tiny", "-p", "resolution:=32"):
        from semcomm_ros.nodes.decoder_node import DecoderNode

        node = DecoderNode()
        try:
            before, synth_before = node.config, node.synth.config
            result = node.set_parameters_atomically([Parameter("lambda_c", value=1.5),
                                                     Parameter("noise", value="bogus")])
            assert not result.successful and "noise must be one of" in result.reason
            assert node.config is before and node.synth.config is synth_before
            assert node.get_parameter("lambda_c").value == before.lambda_c
            result = node.set_parameters_atomically([Parameter("lambda_c", value=1.5),
                                                     Parameter("jitter_frames", value=5)])
            assert result.successful, result.reason
            assert node.config.lambda_c == node.synth.config.lambda_c == 1.5 and before.lambda_c != 1.5
            assert node.synth.model.config is node.synth.config and synth_before.lambda_c != 1.5
            assert node.receiver.config.jitter_frames == 5
            too_long = node.synth.model.temporal.max_frames + 1  # W's bound is the model's, not a range's
            result = node.set_parameters([Parameter("window", value=too_long)])[0]
            assert not result.successful and "Temporal Adapter" in result.reason
        finally:
            _declared(node)
