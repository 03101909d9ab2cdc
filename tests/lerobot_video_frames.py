#!/usr/bin/env python3
"""lerobot_video_frames.py DATASET_DIR - used by tests/video.rs and tests/video_tree.rs (lerobot
0.4.x and 0.6.x).

Loads a LeRobot v3.0 dataset with video features offline and fetches the frames at the first,
middle and last timestamp of every episode. lerobot's video decoder raises when a decoded
frame's timestamp is more than 1e-4 s from the one asked for, so a successful fetch proves the
timestamps. Prints the decoder backend and `OK: N frames decoded`; exits 1 on any failure.
"""
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import lerobot  # noqa: E402
from lerobot.datasets.lerobot_dataset import LeRobotDataset  # noqa: E402


def main():
    root = os.path.abspath(sys.argv[1])
    ds = LeRobotDataset("local/video-test", root=root)
    keys = ds.meta.video_keys
    if not keys:
        print("FAIL: no video features")
        return 1
    backend = getattr(ds, "video_backend", None) or getattr(ds, "_video_backend", None)
    print(f"lerobot {getattr(lerobot, '__version__', '?')}, video backend: {backend}; video keys: {keys}")
    fps = ds.meta.fps
    n = 0
    for ep in range(ds.meta.total_episodes):
        row = ds.meta.episodes[ep]
        start, stop = row["dataset_from_index"], row["dataset_to_index"]
        for idx in (start, (start + stop - 1) // 2, stop - 1):
            item = ds[idx]
            fi = int(item["frame_index"])
            if abs(float(item["timestamp"]) - fi / fps) > 1e-4:
                print(f"FAIL: episode {ep} index {idx}: timestamp {float(item['timestamp'])} != {fi}/{fps}")
                return 1
            for k in keys:
                t = item[k]
                h, w = ds.meta.features[k]["shape"][:2]
                if tuple(t.shape) != (3, h, w):
                    print(f"FAIL: {k} at index {idx} has shape {tuple(t.shape)}")
                    return 1
                if not (0.0 <= float(t.min()) and float(t.max()) <= 1.0 and float(t.std()) > 0.01):
                    print(f"FAIL: {k} at index {idx} does not look like a frame")
                    return 1
                vts = row[f"videos/{k}/from_timestamp"] + fi / fps
                print(f"episode {ep} frame {fi:4d} (index {idx}): {k} decoded at video time {vts:.6f} s, mean {float(t.mean()):.3f}")
                n += 1
    print(f"OK: {n} frames decoded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
