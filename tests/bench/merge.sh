#!/usr/bin/env bash
# Merge cost (issue 12): 8 shards of ~250 MB of bags each, converted with `--shard K/8`, then
# `merge`d; wall time and peak RSS of the merge (the whole process tree, sampled every 20 ms by
# ../shared/tools/tree_rss.py), at the default ceiling and at 32MiB, against one sequential
# conversion of the same bags. With B2D_OLD set, the same merges are also run with that binary
# (interleaved, for a before/after on one machine state). With VBAGS (or VIDEO=1), the same for
# 8 small video shards (`--video`). Figures go to docs/benchmarks.md ("Merge").
#
#   tests/bench/merge.sh            (bags in $BAGS, default /work/bench/merge; made if missing)
#
# The bags: 8 x gen_bag.py --target-size 250M --seed 101..108 (deterministic), written with
#   python3 -m venv /tmp/genvenv && /tmp/genvenv/bin/pip install rosbags numpy pillow lz4
# Video bags: 8 x gen_bag.py --duration 4 --seed 201..208 (three 640x480 cameras at 30 Hz).
# Environment: B2D (binary; default ./target/release/bag2dataset after cargo build --release),
# B2D_OLD (a binary to compare with, e.g. one built from the commit before), BAGS, VBAGS,
# VIDEO (1: also the video case, bags made in $VBAGS), OUT (results and datasets; default a
# new /tmp dir), RUNS (merge runs per ceiling and binary, default 3), PYTHON (with pyarrow,
# for tests/slurm/same_dataset.py).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
BAGS=${BAGS:-/work/bench/merge}
VBAGS=${VBAGS:-}
OUT=${OUT:-$(mktemp -d /tmp/b2d-merge.XXXXXX)}
RUNS=${RUNS:-3}
TREE_RSS=${TREE_RSS:-$repo/../shared/tools/tree_rss.py}
PY=${GENPY:-/tmp/genvenv/bin/python}
PYTHON=${PYTHON:-/tmp/b2d-pyarrow-venv/bin/python}
if [[ -z "${B2D:-}" ]]; then
  (cd "$repo" && cargo build --release --quiet)
  B2D="$repo/target/release/bag2dataset"
fi
if [[ "${VIDEO:-0}" == 1 && -z "$VBAGS" ]]; then VBAGS=/work/bench/merge-video; fi
binaries=(new)
[[ -n "${B2D_OLD:-}" ]] && binaries=(old new)
bin_of() { if [[ $1 == old ]]; then echo "$B2D_OLD"; else echo "$B2D"; fi; }

mkdir -p "$BAGS" "$OUT"
for s in 1 2 3 4 5 6 7 8; do
  b="$BAGS/run-$s.bag"
  [[ -f "$b" ]] || "$PY" "$repo/../shared/tools/gen_bag.py" "$b" --target-size 250M --seed $((100 + s)) >/dev/null
done
echo "date: $(date -u +%FT%TZ); binary: $B2D ($(cd "$repo" && git rev-parse --short HEAD)); old: ${B2D_OLD:-none}; nproc $(nproc); load $(cut -d' ' -f1-3 /proc/loadavg)"
du -sh "$BAGS"
cat "$BAGS"/*.bag >/dev/null

# One merge under tree_rss.py: prints "wall peak_MiB".
measure() {
  local line
  line=$(python3 "$TREE_RSS" "$@" 2>&1 >/dev/null | tail -1)
  echo "$line" | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); assert d["rc"]==0, d; print(round(d["wall_s"],2), round(d["peak_tree_rss_kib"]/1024,1))'
}

# merge_case NAME SHARD_PREFIX SEQUENTIAL MODES...: RUNS merges per mode and binary, interleaved.
merge_case() {
  local name=$1 prefix=$2 seq=$3; shift 3
  echo
  echo "| $name: merge of 8 shards | binary | run | wall s | peak tree RSS MiB | output |"
  echo "|---|---|---:|---:|---:|---|"
  for mode in "$@"; do
    for r in $(seq "$RUNS"); do
      for b in "${binaries[@]}"; do
        flag=(); [[ $mode == default ]] || flag=(--max-memory "$mode")
        rm -rf "$OUT/merged-$name-$b"
        sync
        read -r wall peak < <(measure "$(bin_of "$b")" merge "$prefix"-{1,2,3,4,5,6,7,8} -o "$OUT/merged-$name-$b" --quiet "${flag[@]}")
        echo "| --max-memory $mode | $b | $r | $wall | $peak | $(du -sh "$OUT/merged-$name-$b" | cut -f1) |"
      done
    done
  done
  for b in "${binaries[@]}"; do
    "$B2D" validate "$OUT/merged-$name-$b" >/dev/null
    if [[ -x "$PYTHON" ]]; then
      echo "$b: $("$PYTHON" "$repo/tests/slurm/same_dataset.py" "$seq" "$OUT/merged-$name-$b")"
    fi
  done
  # What the new merge linked: link counts > 1 are files shared with a shard.
  echo "data files of the new merge with more than one link: $(find "$OUT/merged-$name-new/data" -name '*.parquet' -links +1 | wc -l) of $(find "$OUT/merged-$name-new/data" -name '*.parquet' | wc -l)"
  if [[ -d "$OUT/merged-$name-new/videos" ]]; then
    echo "video files with more than one link: $(find "$OUT/merged-$name-new/videos" -name '*.mp4' -links +1 | wc -l) of $(find "$OUT/merged-$name-new/videos" -name '*.mp4' | wc -l)"
  fi
}

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
merge_case image "$OUT/shard" "$OUT/sequential" default 32MiB

if [[ -n "$VBAGS" ]]; then
  mkdir -p "$VBAGS"
  for s in 1 2 3 4 5 6 7 8; do
    b="$VBAGS/v-$s.bag"
    [[ -f "$b" ]] || "$PY" "$repo/../shared/tools/gen_bag.py" "$b" --duration 4 --seed $((200 + s)) >/dev/null
  done
  echo
  du -sh "$VBAGS"
  for k in 1 2 3 4 5 6 7 8; do
    "$B2D" convert "$VBAGS" -o "$OUT/vshard-$k" --video --shard "$k/8" --settle 0 --overwrite --quiet
  done
  "$B2D" convert "$VBAGS" -o "$OUT/vsequential" --video --settle 0 --overwrite --quiet
  du -sh "$OUT/vshard-1" "$OUT/vsequential"
  merge_case video "$OUT/vshard" "$OUT/vsequential" default
fi
