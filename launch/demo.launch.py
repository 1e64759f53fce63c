"""Everything on one machine: scene source -> segmentation -> encoder -> link emulator (2 kbps)
-> decoder + synthesizer. The encoder publishes on tx/* and the emulator relays to the topics the
decoder reads.

    ros2 launch semcomm_ros demo.launch.py bandwidth_kbps:=2.0 target_kbps:=1.8 model:=tiny
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
    robot = LaunchConfiguration("robot_params")
    operator = LaunchConfiguration("operator_params")
    link = LaunchConfiguration("link_params")
    return LaunchDescription([
        DeclareLaunchArgument("namespace", default_value="semcomm"),
        DeclareLaunchArgument("robot_params", default_value=PathJoinSubstitution([share, "config", "robot.yaml"])),
        DeclareLaunchArgument("operator_params",
                              default_value=PathJoinSubstitution([share, "config", "operator.yaml"])),
        DeclareLaunchArgument("link_params", default_value=PathJoinSubstitution([share, "config", "link.yaml"])),
        DeclareLaunchArgument("bandwidth_kbps", default_value="2.0"),
        DeclareLaunchArgument("loss_rate", default_value="0.0"),
        DeclareLaunchArgument("target_kbps", default_value="1.8",
                              description="encoder budget, a little under the link's cap"),
        DeclareLaunchArgument("segmentation_backend", default_value="labels"),
        DeclareLaunchArgument("model", default_value="default"),
        DeclareLaunchArgument("device", default_value="auto"),
        Node(package="semcomm_ros", executable="scene_source", name="scene_source", namespace=ns,
             parameters=[robot]),
        Node(package="semcomm_ros", executable="segmentation_node", name="segmentation_node", namespace=ns,
             parameters=[robot, {"backend": LaunchConfiguration("segmentation_backend")}]),
        Node(package="semcomm_ros", executable="encoder_node", name="encoder_node", namespace=ns,
             parameters=[robot, {"target_kbps": ParameterValue(LaunchConfiguration("target_kbps"),
                                                               value_type=float)}],
             remappings=[("semantic", "tx/semantic"), ("lowres", "tx/lowres")]),
        Node(package="semcomm_ros", executable="link_emulator", name="link_emulator", namespace=ns,
             parameters=[link, {
                 "bandwidth_kbps": ParameterValue(LaunchConfiguration("bandwidth_kbps"), value_type=float),
                 "loss_rate": ParameterValue(LaunchConfiguration("loss_rate"), value_type=float),
             }]),
        Node(package="semcomm_ros", executable="decoder_node", name="decoder_node", namespace=ns,
             parameters=[operator, {"model": LaunchConfiguration("model"),
                                    "device": LaunchConfiguration("device")}]),
    ])
