#!/usr/bin/env bash
# Merge cost (issue 12): 8 shards of ~250 MB of bags each, converted with `--shard K/8`, then
# `merge`d; wall time and peak RSS of the merge (the whole process tree, sampled every 20 ms by
# ../shared/tools/tree_rss.py), at the default ceiling and at 32MiB, against one sequential
# conversion of the same bags. Figures go to docs/benchmarks.md ("Merge").
#
#   tests/bench/merge.sh            (bags in $BAGS, default /work/bench/merge; made if missing)
#
# The bags: 8 x gen_bag.py --target-size 250M --seed 101..108 (deterministic), written with
#   python3 -m venv /tmp/genvenv && /tmp/genvenv/bin/pip install rosbags numpy pillow lz4
# Environment: B2D (binary; default ./target/release/bag2dataset after cargo build --release),
# BAGS, OUT (results and datasets; default a new /tmp dir), RUNS (merge runs per ceiling,
# default 3).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
BAGS=${BAGS:-/work/bench/merge}
OUT=${OUT:-$(mktemp -d /tmp/b2d-merge.XXXXXX)}
RUNS=${RUNS:-3}
TREE_RSS=${TREE_RSS:-$repo/../shared/tools/tree_rss.py}
PY=${GENPY:-/tmp/genvenv/bin/python}
if [[ -z "${B2D:-}" ]]; then
  (cd "$repo" && cargo build --release --quiet)
  B2D="$repo/target/release/bag2dataset"
fi
mkdir -p "$BAGS" "$OUT"
for s in 1 2 3 4 5 6 7 8; do
  b="$BAGS/run-$s.bag"
  [[ -f "$b" ]] || "$PY" "$repo/../shared/tools/gen_bag.py" "$b" --target-size 250M --seed $((100 + s)) >/dev/null
done
echo "date: $(date -u +%FT%TZ); binary: $B2D ($(cd "$repo" && git rev-parse --short HEAD)); nproc $(nproc); load $(cut -d' ' -f1-3 /proc/loadavg)"
du -sh "$BAGS"
cat "$BAGS"/*.bag >/dev/null

# The shards and one sequential run (timed once each, for scale).
t0=$(date +%s.%N)
for k in 1 2 3 4 5 6 7 8; do
  "$B2D" convert "$BAGS" -o "$OUT/shard-$k" --shard "$k/8" --settle 0 --overwrite --quiet
done
t1=$(date +%s.%N)
"$B2D" convert "$BAGS" -o "$OUT/sequential" --settle 0 --overwrite --quiet
t2=$(date +%s.%N)
echo "8 shards converted one after the other: $(echo "$t1 - $t0" | bc) s; one sequential run: $(echo "$t2 - $t1" | bc) s"
du -sh "$OUT/shard-1" "$OUT/sequential"

echo
echo "| merge of 8 shards | run | wall s | peak tree RSS MiB | output |"
echo "|---|---:|---:|---:|---|"
for mode in default 32MiB; do
  for r in $(seq "$RUNS"); do
    flag=(); [[ $mode == default ]] || flag=(--max-memory "$mode")
    rm -rf "$OUT/merged"
    sync
    line=$(python3 "$TREE_RSS" "$B2D" merge "$OUT"/shard-{1,2,3,4,5,6,7,8} -o "$OUT/merged" --quiet "${flag[@]}" 2>&1 >/dev/null | tail -1)
    wall=$(echo "$line" | python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["wall_s"])')
    peak=$(echo "$line" | python3 -c 'import json,sys; print(round(json.loads(sys.stdin.read())["peak_tree_rss_kib"]/1024,1))')
    echo "| --max-memory $mode | $r | $wall | $peak | $(du -sh "$OUT/merged" | cut -f1) |"
  done
done
"$B2D" validate "$OUT/merged"
PYTHON=${PYTHON:-/tmp/b2d-pyarrow-venv/bin/python}
"$PYTHON" "$repo/tests/slurm/same_dataset.py" "$OUT/sequential" "$OUT/merged"
