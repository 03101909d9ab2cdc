#!/usr/bin/env python3
"""lerobot_merge_check.py DATASET_DIR [REFERENCE_DIR] - used by tests/merge_whole.rs (lerobot 0.4.x
and 0.6.x): lerobot loads a dataset made by `merge` offline and, for every episode, fetches its
first, middle and last frames, decoding every camera (images from the parquet, or frames from
the MP4 files for video features). Each item must carry the episode's `episode_index`, its
global `index`, `frame_index / fps` as timestamp and the episode's task. With REFERENCE_DIR (one
sequential run of the same bags), the same items are fetched from it and must be equal: same
numbers, same task, the same decoded pixels (images bit for bit; video frames too, since a
merge links the shards' video files and each episode is encoded on its own).

Prints `OK: N items checked` and exits 0, or `FAIL: ...` and exits 1.
"""
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import lerobot  # noqa: E402
from lerobot.datasets.lerobot_dataset import LeRobotDataset  # noqa: E402


def fail(what):
    print(f"FAIL: {what}")
    sys.exit(1)


def load(path, name):
    return LeRobotDataset(f"local/{name}", root=os.path.abspath(path))


def main():
    ds = load(sys.argv[1], "merged")
    ref = load(sys.argv[2], "reference") if len(sys.argv) > 2 else None
    meta = ds.meta
    if len(ds) != meta.total_frames:
        fail(f"len {len(ds)} != total_frames {meta.total_frames}")
    cams = [k for k, f in meta.features.items() if f["dtype"] in ("image", "video")]
    if not cams:
        fail("no camera features")
    fps = meta.fps
    n = 0
    for ep in range(meta.total_episodes):
        row = meta.episodes[ep]
        start, stop = row["dataset_from_index"], row["dataset_to_index"]
        task = row["tasks"][0]
        for idx in sorted({start, (start + stop - 1) // 2, stop - 1}):
            item = ds[idx]
            if int(item["episode_index"]) != ep or int(item["index"]) != idx:
                fail(f"index {idx}: episode_index {int(item['episode_index'])}, index {int(item['index'])}")
            fi = int(item["frame_index"])
            if fi != idx - start or abs(float(item["timestamp"]) - fi / fps) > 1e-4:
                fail(f"index {idx}: frame_index {fi}, timestamp {float(item['timestamp'])}")
            if item["task"] != task:
                fail(f"index {idx}: task {item['task']!r} != {task!r}")
            for k in cams:
                t = item[k]
                h, w = meta.features[k]["shape"][:2]
                if tuple(t.shape) != (3, h, w):
                    fail(f"{k} at index {idx}: shape {tuple(t.shape)}")
                if not (0.0 <= float(t.min()) and float(t.max()) <= 1.0):
                    fail(f"{k} at index {idx}: values outside [0, 1]")
            if ref is not None:
                other = ref[idx]
                for key in ["episode_index", "index", "frame_index", "task_index", "timestamp"] + cams:
                    a, b = item[key], other[key]
                    if hasattr(a, "shape"):
                        if tuple(a.shape) != tuple(b.shape) or not bool((a == b).all()):
                            fail(f"{key} at index {idx} differs from the reference")
                    elif a != b:
                        fail(f"{key} at index {idx}: {a!r} vs {b!r}")
                if item["task"] != other["task"]:
                    fail(f"task at index {idx}: {item['task']!r} vs {other['task']!r}")
            n += 1
    kinds = sorted({meta.features[k]["dtype"] for k in cams})
    print(f"lerobot {getattr(lerobot, '__version__', '?')}: {meta.total_episodes} episodes, "
          f"{len(ds)} frames, cameras {cams} ({'/'.join(kinds)})")
    print(f"OK: {n} items checked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
