import os

# Two cores on the build machines: keep torch from oversubscribing when tests run in parallel
# with ROS processes.
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("YOLO_OFFLINE", "1")
