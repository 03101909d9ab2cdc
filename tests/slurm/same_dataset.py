#!/usr/bin/env python3
"""Checks that two LeRobot v3.0 datasets made by bag2dataset hold the same data: the same data
rows (every column), the same episodes (lengths, tasks, index ranges, per-episode stats), the
same tasks, the same info.json totals and features, and stats.json equal within 1e-9 relative.
Columns that only say where an episode sits in the files (chunk/file indices) are not compared:
two runs may roll files at other points. Used by tests/slurm/run.sh; needs pyarrow.

Usage: same_dataset.py A B      exit 0 when equal, 1 with the first difference otherwise.
"""
import json
import math
import sys
from pathlib import Path

try:
    import pyarrow.parquet as pq
    import pyarrow as pa
except ImportError:
    sys.exit("same_dataset.py needs pyarrow (pip install pyarrow)")




def table(files):
    files = sorted(files)
    if not files:
        return None
    return pa.concat_tables([pq.read_table(f) for f in files])


def layout_column(name):
    return name.endswith(("chunk_index", "file_index")) or name.startswith("meta/episodes/") or (
        name.startswith("videos/") and name.endswith(("from_timestamp", "to_timestamp")))


def close(a, b, at):
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            fail(f"{at}: keys {sorted(a)} vs {sorted(b)}")
        for k in a:
            close(a[k], b[k], f"{at}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            fail(f"{at}: {len(a)} vs {len(b)} values")
        for i, (x, y) in enumerate(zip(a, b)):
            close(x, y, f"{at}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        if not (math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) or (a != a and b != b)):
            fail(f"{at}: {a} vs {b}")
    elif a != b:
        fail(f"{at}: {a!r} vs {b!r}")


def fail(what):
    print(f"datasets differ: {what}")
    sys.exit(1)


def main(a, b):
    a, b = Path(a), Path(b)
    ia, ib = (json.loads((d / "meta/info.json").read_text()) for d in (a, b))
    for k in ("total_episodes", "total_frames", "total_tasks", "fps", "features", "robot_type"):
        close(ia.get(k), ib.get(k), f"info.json {k}")
    da, db = (table(d.glob("data/*/*.parquet")) for d in (a, b))
    if da.num_rows != db.num_rows:
        fail(f"data rows {da.num_rows} vs {db.num_rows}")
    if not da.equals(db):
        for name in da.column_names:
            if not da.column(name).equals(db.column(name)):
                fail(f"data column {name}")
        fail("data tables")
    ea, eb = (table(d.glob("meta/episodes/*/*.parquet")) for d in (a, b))
    keep = [c for c in ea.column_names if not layout_column(c)]
    if sorted(keep) != sorted(c for c in eb.column_names if not layout_column(c)):
        fail(f"episode columns {ea.column_names} vs {eb.column_names}")
    for c in keep:
        close(ea.column(c).to_pylist(), eb.column(c).to_pylist(), f"episodes {c}")
    ta, tb = (pq.read_table(d / "meta/tasks.parquet") for d in (a, b))
    close(ta.to_pylist(), tb.to_pylist(), "tasks")
    sa, sb = (json.loads((d / "meta/stats.json").read_text()) for d in (a, b))
    close(sa, sb, "stats.json")
    print(f"same dataset: {ia['total_episodes']} episodes, {ia['total_frames']} frames")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
