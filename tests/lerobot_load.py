#!/usr/bin/env python3
"""lerobot_load.py DATASET_DIR - used by tests/convert_ros2.rs: lerobot (0.4.x or 0.6.x) opens a
LeRobot v3.0 dataset offline and fetches its first, middle and last items."""
import os, sys
os.environ.setdefault("HF_HUB_OFFLINE", "1"); os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
import lerobot
from lerobot.datasets.lerobot_dataset import LeRobotDataset
root = os.path.abspath(sys.argv[1])
ds = LeRobotDataset("local/ros2", root=root)
n = len(ds)
for i in (0, n // 2, n - 1):
    it = ds[i]
shapes = {k: tuple(v.shape) for k, v in it.items() if hasattr(v, "shape")}
print(f"lerobot {lerobot.__version__ if hasattr(lerobot,'__version__') else '?'}: {root}: {n} frames, {ds.meta.total_episodes} episodes, fps {ds.meta.fps}; last item {shapes}")
