"""ROS glue shared by the nodes, rclpy code only: message conversion (no cv_bridge), QoS profiles,
rosbag2 files of the link topics and the command-line stand-ins for ``ros2 topic`` / ``ros2
param``. What the nodes run lives below this layer, in plain Python (``sender``, ``receiver``,
``link_budget``, ``link``), testable without DDS."""
