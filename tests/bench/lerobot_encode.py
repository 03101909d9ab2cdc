#!/usr/bin/env python3
"""lerobot_encode.py IMAGE_DATASET WORKDIR [FRAMES] - lerobot's own encoder on our frames.

Takes the first FRAMES (default 900) frames of every camera of a dataset converted in image mode
(`bag2dataset convert BAG -o IMAGE_DATASET`: the bag's JPEGs in the parquet), writes them as
lerobot's recorder does (frame-XXXXXX.png per camera), and times lerobot's
`encode_video_frames` with the settings bag2dataset uses (libsvtav1, crf 30, g 2, preset 12,
yuv420p) on each camera in turn, as lerobot's `save_episode` does. The PNG writing is not
timed. Prints seconds and frames per second (camera frames), and the per-frame time.
Run with a lerobot venv's python (0.4.x: encode_video_frames(imgs_dir, video_path, fps, ...)).
"""
import glob
import io
import os
import sys
import time

import pyarrow.parquet as pq
from PIL import Image

from lerobot.datasets.video_utils import encode_video_frames


def main():
    src, work = sys.argv[1], sys.argv[2]
    limit = int(sys.argv[3]) if len(sys.argv) > 3 else 900
    files = sorted(glob.glob(os.path.join(src, "data", "chunk-*", "file-*.parquet")))
    cams = [c for c in pq.read_schema(files[0]).names if c.startswith("observation.images.")]
    total_frames, total_s = 0, 0.0
    for cam in cams:
        d = os.path.join(work, cam)
        os.makedirs(d, exist_ok=True)
        n = 0
        for f in files:
            for batch in pq.ParquetFile(f).iter_batches(columns=[cam], batch_size=64):
                for v in batch.column(0).to_pylist():
                    if n >= limit:
                        break
                    Image.open(io.BytesIO(v["bytes"])).convert("RGB").save(
                        os.path.join(d, f"frame-{n:06d}.png"), compress_level=1)
                    n += 1
        out = os.path.join(work, f"{cam}.mp4")
        t0 = time.perf_counter()
        encode_video_frames(d, out, 30, vcodec="libsvtav1", g=2, crf=30, preset=12, overwrite=True)
        dt = time.perf_counter() - t0
        total_frames += n
        total_s += dt
        print(f"{cam}: {n} frames in {dt:.2f} s ({n / dt:.1f} frames/s), {os.path.getsize(out)} bytes")
    print(f"lerobot encode_video_frames: {total_frames} camera frames in {total_s:.2f} s: "
          f"{1000 * total_s / total_frames:.2f} ms per frame ({total_frames / total_s:.1f} frames/s)")


if __name__ == "__main__":
    main()
