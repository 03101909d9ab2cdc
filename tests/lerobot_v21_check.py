#!/usr/bin/env python3
"""lerobot_v21_check.py DATASET_DIR... - used by tests/v21.rs.

Loads each dataset offline with the installed lerobot's own LeRobotDataset (lerobot 0.3.3 for
v2.1 datasets, 0.4.x for v3.0 ones) and fetches the first, middle and last frame of every
episode: every camera (image or video) must decode to a (3, H, W) float tensor in [0, 1],
`timestamp` must equal frame_index / fps within 1e-4 s, `episode_index` must be the episode's.
lerobot itself checks all timestamps at load time and, for videos, that each decoded frame is
within 1e-4 s of the asked timestamp. Prints `OK: <dataset> ...` per dataset; exits 1 on any
failure.
"""
import os
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# datasets caches an Arrow copy of every parquet it loads; keep it out of the user's cache.
os.environ.setdefault("HF_DATASETS_CACHE", tempfile.mkdtemp(prefix="v21check-hf-"))

from lerobot.datasets.lerobot_dataset import CODEBASE_VERSION, LeRobotDataset  # noqa: E402


def episode_ranges(ds):
    meta = ds.meta
    if hasattr(ds, "episode_data_index") and ds.episode_data_index is not None:
        idx = ds.episode_data_index
        return [(int(idx["from"][e]), int(idx["to"][e])) for e in range(meta.total_episodes)]
    return [
        (int(meta.episodes[e]["dataset_from_index"]), int(meta.episodes[e]["dataset_to_index"]))
        for e in range(meta.total_episodes)
    ]


def check(root):
    ds = LeRobotDataset("local/v21-check", root=root)
    fps = ds.meta.fps
    cams = ds.meta.camera_keys
    n = 0
    for ep, (start, stop) in enumerate(episode_ranges(ds)):
        if stop <= start:
            print(f"FAIL: {root}: episode {ep} is empty")
            return False
        for idx in sorted({start, (start + stop - 1) // 2, stop - 1}):
            item = ds[idx]
            fi = int(item["frame_index"])
            if int(item["episode_index"]) != ep:
                print(f"FAIL: {root}: index {idx} has episode_index {int(item['episode_index'])}, expected {ep}")
                return False
            if abs(float(item["timestamp"]) - fi / fps) > 1e-4:
                print(f"FAIL: {root}: index {idx}: timestamp {float(item['timestamp'])} != {fi}/{fps}")
                return False
            if not isinstance(item.get("task"), str) or not item["task"]:
                print(f"FAIL: {root}: index {idx} has no task text")
                return False
            for k in cams:
                t = item[k]
                h, w = ds.meta.features[k]["shape"][:2]
                if tuple(t.shape) != (3, h, w):
                    print(f"FAIL: {root}: {k} at index {idx} has shape {tuple(t.shape)}, expected (3, {h}, {w})")
                    return False
                if not (0.0 <= float(t.min()) and float(t.max()) <= 1.0):
                    print(f"FAIL: {root}: {k} at index {idx} is not in [0, 1]")
                    return False
            n += 1
    print(
        f"OK: {root}: lerobot codebase {CODEBASE_VERSION}, {ds.meta.total_episodes} episodes, "
        f"{ds.num_frames} frames, cameras {cams}, {n} items fetched (first/middle/last of every episode)"
    )
    return True


def main():
    ok = True
    for root in sys.argv[1:]:
        ok = check(os.path.abspath(root)) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
