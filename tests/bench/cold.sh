#!/usr/bin/env bash
# Cold reads (issue 14): `info` and `convert` of a bag that is not in the page cache.
#
#   tests/bench/cold.sh BAG [B2D_BEFORE]
#
# BAG: e.g. a 4 GB bag written by ../shared/tools/gen_bag.py --target-size 4G. Before every
# run only BAG is evicted from the page cache (posix_fadvise DONTNEED on that file; the
# machine's caches are never dropped), and `fincore` shows how much of it is still cached.
# Runs, each INFO_RUNS (default 5) or RUNS (default 1) times, with B2D (default: this repo's
# release build) and, when given, the binary B2D_BEFORE:
#   info --json BAG          cold, wall time
#   info --json BAG          warm (right after the cold run)
#   convert BAG -o OUT       cold, wall time and peak RSS (/usr/bin/time)
# Output: a markdown table on stdout; raw outputs in $OUT (default a new /tmp dir).
# Cross-check of the read pattern by hand (see docs/benchmarks.md):
#   strace -f -e trace=pread64,read -o trace.txt bag2dataset convert BAG -o OUT
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
BAG=${1:?usage: cold.sh BAG [B2D_BEFORE]}
BEFORE=${2:-}
INFO_RUNS=${INFO_RUNS:-5}
RUNS=${RUNS:-1}
OUT=${OUT:-$(mktemp -d /tmp/b2d-cold.XXXXXX)}
mkdir -p "$OUT"
if [[ -z "${B2D:-}" ]]; then
  (cd "$repo" && cargo build --release --quiet)
  B2D="${CARGO_TARGET_DIR:-$repo/target}/release/bag2dataset"
fi

evict() {
  python3 -c 'import os,sys; fd=os.open(sys.argv[1],os.O_RDONLY); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED); os.close(fd)' "$1"
}
cached() { fincore -nb -o RES "$1" | awk '{print $1}'; }
secs() { python3 -c 'import sys,time; t=time.perf_counter(); import subprocess; subprocess.run(sys.argv[1:],stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL,check=True); print(f"{time.perf_counter()-t:.3f}")' "$@"; }

echo "| binary | step | runs (s) | bag bytes cached before |"
echo "|---|---|---|---|"
for bin in "$B2D" $BEFORE; do
  name=$([[ "$bin" == "$B2D" ]] && echo after || echo before)
  cold=() warm=() left=()
  for _ in $(seq "$INFO_RUNS"); do
    evict "$BAG"; left+=("$(cached "$BAG")")
    cold+=("$(secs "$bin" info --json "$BAG")")
    warm+=("$(secs "$bin" info --json "$BAG")")
  done
  echo "| $name | info, cold | ${cold[*]} | ${left[*]} |"
  echo "| $name | info, warm | ${warm[*]} | - |"
  for r in $(seq "$RUNS"); do
    rm -rf "$OUT/ds-$name-$r"
    evict "$BAG"; before=$(cached "$BAG")
    /usr/bin/time -f "%e %M" -o "$OUT/time-$name-$r" \
      "$bin" convert "$BAG" -o "$OUT/ds-$name-$r" --json --quiet > "$OUT/report-$name-$r.json" 2> "$OUT/stderr-$name-$r"
    read -r wall rss < "$OUT/time-$name-$r"
    echo "| $name | convert, cold | ${wall} (peak RSS ${rss} KiB) | ${before} |"
    rm -rf "$OUT/ds-$name-$r"
  done
done
