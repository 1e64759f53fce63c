"""ROS glue shared by the nodes: message conversion (no cv_bridge), QoS profiles, the
closed-loop rate controller and sliding-window statistics. Only ``convert`` and ``qos`` import
rclpy / generated messages; the rest is plain Python so it is testable without DDS."""
