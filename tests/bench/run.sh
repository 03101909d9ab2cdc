#!/usr/bin/env bash
# Benchmark of bag2dataset's memory ceiling and throughput (issue 4; figures in docs/benchmarks.md).
#
#   tests/bench/run.sh [BAG...]
#
# Default bags: /work/bench/{medium,large,medium-lz4}.bag, those present. They are written by
# ../shared/tools/gen_bag.py (deterministic: same seed and arguments, same bytes):
#   python3 -m venv /tmp/genvenv && /tmp/genvenv/bin/pip install rosbags numpy pillow lz4
#   /tmp/genvenv/bin/python ../shared/tools/gen_bag.py /work/bench/medium.bag --target-size 1G --seed 1
#   /tmp/genvenv/bin/python ../shared/tools/gen_bag.py /work/bench/medium-lz4.bag --target-size 1G --compression lz4 --seed 1
#   /tmp/genvenv/bin/python ../shared/tools/gen_bag.py /work/bench/large.bag --target-size 4G --seed 1
# (/work/bench/gen_all.sh regenerates them all; /work/bench/MD5SUMS holds their checksums.)
#
# Per bag, with the page cache warm (`cat BAG > /dev/null` first):
#   info                                  (INFO_RUNS runs)
#   convert at the default ceiling        (RUNS runs; each under /usr/bin/time -v)
#   convert --max-memory 32MiB            (RUNS runs)
#   convert --max-memory 4G ("unlimited") (RUNS runs)
# and on the first bag (the 1 GB one by default) a full decode: dump -t /sensors_data_raw.
# Peak RSS comes from the kernel (`/usr/bin/time -v`, ru_maxrss); the converter's own figures
# (peak anon / file-backed RSS) come from its --json report.
#
# Environment: B2D (binary; default: `cargo build --release`, then $CARGO_TARGET_DIR or
# ./target), RUNS (default 3), INFO_RUNS (default 5), OUT (results; default a new /tmp dir),
# MODES (default "default 32MiB 4G"). Output: a markdown table on stdout; every run's raw
# `time -v` output, JSON report and stderr in $OUT/runs.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
RUNS=${RUNS:-3}
INFO_RUNS=${INFO_RUNS:-5}
MODES=${MODES:-"default 32MiB 4G"}
OUT=${OUT:-$(mktemp -d /tmp/b2d-bench.XXXXXX)}
mkdir -p "$OUT/runs"

if [[ -z "${B2D:-}" ]]; then
  (cd "$repo" && cargo build --release --quiet)
  B2D="${CARGO_TARGET_DIR:-$repo/target}/release/bag2dataset"
fi
[[ -x "$B2D" ]] || { echo "no binary at $B2D" >&2; exit 2; }
[[ -x /usr/bin/time ]] || { echo "needs GNU time at /usr/bin/time (apt-get install time)" >&2; exit 2; }

bags=("$@")
if [[ ${#bags[@]} -eq 0 ]]; then
  for b in /work/bench/medium.bag /work/bench/large.bag /work/bench/medium-lz4.bag; do
    [[ -f "$b" ]] && bags+=("$b")
  done
fi
if [[ ${#bags[@]} -eq 0 ]]; then
  echo "no bags given and none in /work/bench; see the top of this script to generate them" >&2
  exit 2
fi

{
  echo "date: $(date -u +%FT%TZ)"
  echo "binary: $B2D ($(cd "$repo" && git rev-parse --short HEAD 2>/dev/null || echo '?'))"
  echo "kernel: $(uname -r); nproc: $(nproc)"
  free -m
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$OUT/machine.txt"

# run NAME CMD... : one timed run; files $OUT/runs/NAME.{time,json,err}
timed() {
  local name=$1; shift
  /usr/bin/time -v -o "$OUT/runs/$name.time" "$@" > "$OUT/runs/$name.json" 2> "$OUT/runs/$name.err" || true
}

for bag in "${bags[@]}"; do
  base=$(basename "$bag" .bag)
  echo "== $bag" >&2
  cat "$bag" > /dev/null
  for i in $(seq 1 "$INFO_RUNS"); do
    timed "$base@info@$i" "$B2D" info "$bag" --json
  done
  # Modes interleaved (run 1 of each mode, then run 2, ...) so that a slow spell of the machine
  # does not fall on one mode; the output of each run is deleted and synced away first.
  for i in $(seq 1 "$RUNS"); do
    for mode in $MODES; do
      ds="$OUT/ds"
      rm -rf "$ds"
      sync
      args=(convert "$bag" -o "$ds" --json)
      [[ $mode != default ]] && args+=(--max-memory "$mode")
      echo "   convert $mode run $i" >&2
      timed "$base@$mode@$i" "$B2D" "${args[@]}"
      rm -rf "$ds"
    done
  done
done

# A full decode pass of one topic of the first bag (the 1 GB one by default).
first=${bags[0]}
base=$(basename "$first" .bag)
cat "$first" > /dev/null
for i in $(seq 1 "$RUNS"); do
  echo "== dump -t /sensors_data_raw $first run $i" >&2
  /usr/bin/time -v -o "$OUT/runs/$base@dump-sensors@$i.time" "$B2D" dump "$first" -t /sensors_data_raw \
    > /dev/null 2> "$OUT/runs/$base@dump-sensors@$i.err" || true
  : > "$OUT/runs/$base@dump-sensors@$i.json"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/machine.txt"

python3 "$here/report.py" "$OUT" "${bags[@]}"
echo "raw results: $OUT" >&2
