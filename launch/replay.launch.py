"""Replay a recorded bag of the link topics into the decoder.

    ros2 launch semcomm_ros replay.launch.py bag:=/path/to/bag rate:=1.0
    ros2 launch semcomm_ros replay.launch.py bag:=/path/to/bag lockstep:=true   # every frame, reproducibly

The decoder runs on the replay's /clock (use_sim_time), so its diagnostics measure latency against
the replay. With ``lockstep`` the replay goes frame by frame and the decoder synthesizes every
frame (``every_frame``): two such replays of one bag give the same synthesized frames.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    share = FindPackageShare("semcomm_ros")
    ns = LaunchConfiguration("namespace")
    lockstep = ParameterValue(LaunchConfiguration("lockstep"), value_type=bool)
    return LaunchDescription([
        DeclareLaunchArgument("bag", description="rosbag2 folder with semantic/lowres topics"),
        DeclareLaunchArgument("rate", default_value="1.0", description="speed factor (timed mode)"),
        DeclareLaunchArgument("lockstep", default_value="false",
                              description="frame by frame; the decoder synthesizes every frame"),
        DeclareLaunchArgument("start_delay_s", default_value="1.0",
                              description="seconds after the subscribers matched, before the first message"),
        DeclareLaunchArgument("namespace", default_value="semcomm"),
        DeclareLaunchArgument("replay_params", default_value=PathJoinSubstitution([share, "config", "replay.yaml"])),
        DeclareLaunchArgument("operator_params",
                              default_value=PathJoinSubstitution([share, "config", "operator.yaml"])),
        DeclareLaunchArgument("model", default_value="default"),
        Node(package="semcomm_ros", executable="bag_replay", name="bag_replay", namespace=ns,
             parameters=[LaunchConfiguration("replay_params"), {
                 "bag": LaunchConfiguration("bag"),
                 "rate": ParameterValue(LaunchConfiguration("rate"), value_type=float),
                 "lockstep": lockstep,
                 "start_delay_s": ParameterValue(LaunchConfiguration("start_delay_s"), value_type=float),
             }]),
        Node(package="semcomm_ros", executable="decoder_node", name="decoder_node", namespace=ns,
             parameters=[LaunchConfiguration("operator_params"), {
                 "model": LaunchConfiguration("model"),
                 "every_frame": lockstep,
                 "use_sim_time": True,
             }]),
    ])
