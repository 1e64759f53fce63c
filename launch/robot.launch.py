"""Robot side: scene source (or your camera, remapped to semcomm/camera/image_raw),
segmentation and the encoder, publishing the link topics under /semcomm.

    ros2 launch semcomm_ros robot.launch.py target_kbps:=2.0 use_scene_source:=false \
        params:=/path/to/robot.yaml
    ros2 launch semcomm_ros robot.launch.py profile:=paper     # the paper's exact scheme (xi 6, P 4)
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    params = LaunchConfiguration("params")
    ns = LaunchConfiguration("namespace")
    return LaunchDescription([
        DeclareLaunchArgument("params", default_value=PathJoinSubstitution(
            [FindPackageShare("semcomm_ros"), "config", "robot.yaml"]), description="robot params YAML"),
        DeclareLaunchArgument("namespace", default_value="semcomm"),
        DeclareLaunchArgument("use_scene_source", default_value="true",
                              description="publish generated tabletop frames instead of a camera"),
        DeclareLaunchArgument("segmentation_backend", default_value="",
                              description="ultralytics | labels | '' (config default)"),
        DeclareLaunchArgument("target_kbps", default_value="2.0", description="total budget, 0 = off"),
        DeclareLaunchArgument("profile", default_value="tracked",
                              description="semantic codec profile: tracked | paper (the paper's exact scheme)"),
        Node(package="semcomm_ros", executable="scene_source", name="scene_source", namespace=ns,
             parameters=[params], condition=IfCondition(LaunchConfiguration("use_scene_source"))),
        Node(package="semcomm_ros", executable="segmentation_node", name="segmentation_node", namespace=ns,
             parameters=[params, {"backend": LaunchConfiguration("segmentation_backend")}]),
        Node(package="semcomm_ros", executable="encoder_node", name="encoder_node", namespace=ns,
             parameters=[params, {
                 "target_kbps": ParameterValue(LaunchConfiguration("target_kbps"), value_type=float),
                 "profile": LaunchConfiguration("profile"),
             }]),
    ])
