"""pip route (no ROS install): ``pip install -e .`` gives the ``semcomm`` CLI and one console
script per node. Under a ROS 2 install, colcon builds the package from CMakeLists.txt instead
(ament_cmake + ament_cmake_python), which also generates the msg/ interfaces."""

from setuptools import find_packages, setup

NODES = ["scene_source", "segmentation_node", "encoder_node", "link_emulator", "decoder_node", "bag_replay"]

setup(
    name="semcomm_ros",
    version="0.1.0",
    packages=find_packages(include=["semcomm_ros", "semcomm_ros.*"]),
    include_package_data=True,
    package_data={"semcomm_ros": ["**/*.yaml", "**/*.json", "**/*.safetensors", "**/*.pt", "**/*.md"]},
    python_requires=">=3.10",
    entry_points={
        "console_scripts": ["semcomm = semcomm_ros.cli:main"]
        + [f"{n} = semcomm_ros.nodes.{n}:main" for n in NODES],
    },
)
