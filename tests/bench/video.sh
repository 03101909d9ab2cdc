#!/usr/bin/env bash
# Video benchmark (issue 11): the 1 GB three-camera bag converted with --video at several
# ceilings and at the default, the process tree's summed RSS sampled from outside every 20 ms
# (with ../shared/tools/tree_rss.py's functions). One line per run: ceiling, wall, tree peak
# (outside and reported), converter peak, encoders at once, frames, each child's peak.
#   tests/bench/video.sh BAG OUTDIR [CEILING...]   (CEILING "default" = no --max-memory)
set -euo pipefail
bag=$1; out=$2; shift 2
ceilings=("$@")
[ $# -gt 0 ] || ceilings=(default 512MiB 256MiB 192MiB)
bin=${BIN:-target/release/bag2dataset}
tools=${TOOLS:-../shared/tools}
mkdir -p "$out"
for c in "${ceilings[@]}"; do
  ds="$out/ds-$c"; rm -rf "$ds"
  args=(convert "$bag" -o "$ds" --video --json -q)
  [ "$c" = default ] || args+=(--max-memory "$c")
  sync
  python3 - "$tools" "$c" "$out/report-$c.json" "$bin" "${args[@]}" <<'PY'
import json, subprocess, sys, time
tools, c, rep = sys.argv[1:4]
sys.path.insert(0, tools)
from tree_rss import children, rss_kib

def tree(pid):
    out, todo = [], [pid]
    while todo:
        for k in children(todo.pop()):
            out.append(k); todo.append(k)
    return out

t0 = time.time()
with open(rep, "w") as f:
    p = subprocess.Popen(sys.argv[4:], stdout=f)
    peak = peak_main = most = 0
    while p.poll() is None:
        kids = tree(p.pid)
        main = rss_kib(p.pid)
        peak = max(peak, main + sum(rss_kib(k) for k in kids))
        peak_main, most = max(peak_main, main), max(most, len(kids))
        time.sleep(0.02)
wall = time.time() - t0
try:
    r = json.load(open(rep)); m = r["memory"]; v = m.get("video") or {}
    print(f"{c:>8}: rc {p.returncode}, wall {wall:.1f} s, tree peak (outside) {peak/1024:.1f} MiB, "
          f"reported tree {m['peak_tree_rss']/2**20:.1f} MiB, converter {m['peak_rss']/2**20:.1f} MiB, "
          f"ceiling {m['ceiling']/2**20:.1f} MiB ({m.get('ceiling_source', '')}), "
          f"encoders {v.get('encoders_parallel')}/{v.get('cameras')} ({v.get('encoder_bytes', 0)/2**20:.0f} MiB planned each), "
          f"frames {r['frames']}, most children at once {most}; children: "
          + ", ".join(f"{x['label']} {x['peak_rss']/2**20:.0f}" for x in m['children']), flush=True)
except Exception as e:
    print(f"{c:>8}: rc {p.returncode}, wall {wall:.1f} s, tree peak {peak/1024:.1f} MiB, no report ({e})", flush=True)
PY
done
