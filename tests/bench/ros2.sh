#!/bin/bash
# ROS 2 benchmark of docs/benchmarks.md (issue 13). Run in a directory holding ros1.bag and the
# rosbag2 directories mcap_zstd, mcap_none, sqlite (gen_bag.py commands in docs/benchmarks.md):
# 2 interleaved rounds of a zero-config convert at the default ceiling under tree_rss.py (whole
# process tree), then `dump --count` and Python rosbags' reader (rosbags_read.py beside this
# script; PY = a Python with rosbags) on each.
HERE=$(cd "$(dirname "$0")" && pwd)
B=${B:-$HERE/../../target/release/bag2dataset}
TREE_RSS=${TREE_RSS:-$HERE/../../../shared/tools/tree_rss.py}
PY=${PY:-/tmp/genvenv/bin/python}
for round in 1 2; do
  for b in ros1.bag mcap_zstd mcap_none sqlite; do
    rm -rf out-x; sync
    python3 "$TREE_RSS" "$B" convert --quiet "$b" -o out-x 2> r.txt
    echo "$round $b $(tail -1 r.txt)"
  done
done
for b in ros1.bag mcap_zstd mcap_none sqlite; do
  /usr/bin/time -f "dump-count $b %e s %M KiB" "$B" dump --count "$b" > /dev/null
done
for b in ros1.bag mcap_zstd mcap_none sqlite; do
  /usr/bin/time -f "rosbags $b %e s %M KiB" "$PY" "$HERE/rosbags_read.py" "$b"
done
rm -rf out-x r.txt
uptime
