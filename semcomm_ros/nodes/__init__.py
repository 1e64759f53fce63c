"""rclpy nodes (one per file, each with ``main()``): thin wrappers that convert messages and
call the codec, segmentation and synthesizer layers. See docs/ros.md."""
