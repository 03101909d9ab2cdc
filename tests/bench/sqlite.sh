#!/bin/bash
# SQLite benchmark of docs/benchmarks.md ("SQLite read by time", issue 13). Run in a directory
# holding ros1.bag, the rosbag2 directory sqlite and noidx/noidx.db3 (commands in
# docs/benchmarks.md). ROUNDS interleaved rounds (default 6) of a zero-config convert at the
# default ceiling under tree_rss.py (whole process tree): ros1.bag, sqlite, noidx, and sqlite
# with B_MAIN (another build, e.g. main's) when set; then dump --count and Python rosbags'
# reader; then /usr/bin/time max RSS (the kernel's VmHWM) with jemalloc's default purging and
# with immediate purging (_RJEM_MALLOC_CONF=dirty_decay_ms:0), which removes the run-to-run
# jitter of the peak.
HERE=$(cd "$(dirname "$0")" && pwd)
B=${B:-$HERE/../../target/release/bag2dataset}
TREE_RSS=${TREE_RSS:-$HERE/../../../shared/tools/tree_rss.py}
PY=${PY:-/tmp/genvenv/bin/python}
runs=("$B ros1.bag" "$B sqlite" "$B noidx/noidx.db3")
[ -n "$B_MAIN" ] && runs+=("$B_MAIN sqlite")
for round in $(seq 1 "${ROUNDS:-6}"); do
  for spec in "${runs[@]}"; do
    set -- $spec
    rm -rf out-x; sync
    python3 "$TREE_RSS" "$1" convert --quiet "$2" -o out-x 2> r.txt
    echo "$round $1 $2 $(tail -1 r.txt) load=$(cut -d' ' -f1 /proc/loadavg)"
  done
done
for spec in "${runs[@]}"; do
  set -- $spec
  /usr/bin/time -f "dump-count $1 $2 %e s %M KiB" "$1" dump --count "$2" > /dev/null
done
for b in ros1.bag sqlite; do
  /usr/bin/time -f "rosbags $b %e s %M KiB" "$PY" "$HERE/rosbags_read.py" "$b"
done
for conf in "" "dirty_decay_ms:0"; do
  for round in 1 2; do
    for spec in "${runs[@]}"; do
      set -- $spec
      rm -rf out-x
      _RJEM_MALLOC_CONF=$conf /usr/bin/time -f "hwm [$conf] $1 $2 %e s maxrss %M KiB" \
        "$1" convert --quiet "$2" -o out-x
    done
  done
done
rm -rf out-x r.txt
uptime
