"""Operator station: the decoder + causal synthesizer, subscribing to the link topics under
/semcomm and publishing synthesized, decoded_labels, decoded_lowres and diagnostics.

    ros2 launch semcomm_ros operator.launch.py device:=cuda model:=/path/to/model

The synthesizer runs at its model's operating point (synthesizer.json); change num_steps, window,
strength, ... in the params file or at run time (``ros2 param set /semcomm/decoder_node num_steps 2``).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    params = LaunchConfiguration("params")
    return LaunchDescription([
        DeclareLaunchArgument("params", default_value=PathJoinSubstitution(
            [FindPackageShare("semcomm_ros"), "config", "operator.yaml"]), description="operator params YAML"),
        DeclareLaunchArgument("namespace", default_value="semcomm"),
        DeclareLaunchArgument("device", default_value="auto", description="auto | cpu | cuda | cuda:N"),
        DeclareLaunchArgument("model", default_value="default", description="default | tiny | model dir"),
        Node(package="semcomm_ros", executable="decoder_node", name="decoder_node",
             namespace=LaunchConfiguration("namespace"),
             parameters=[params, {
                 "device": LaunchConfiguration("device"),
                 "model": LaunchConfiguration("model"),
             }]),
    ])
