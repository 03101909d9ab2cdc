#!/usr/bin/env bash
# usage: med.sh N BAG BASE_BIN FIX_BIN: cold converts, --json, alternating base/ra2, N rounds;
# keeps the datasets of round 1 (under /tmp/cold) for a diff -r
n=$1; bag=${2:-/work/bench/medium.bag}; base_bin=$3; fix_bin=$4
mkdir -p /tmp/cold
evict() { python3 -c 'import os,sys; fd=os.open(sys.argv[1],os.O_RDONLY); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED); os.close(fd)' "$1"; }
for i in $(seq $n); do
  if (( i % 2 )); then order="base ra2"; else order="ra2 base"; fi
  for w in $order; do
    case $w in base) bin=$base_bin;; ra2) bin=$fix_bin;; esac
    out=/tmp/cold/med-$w-$i; rm -rf $out; sync; evict $bag
    /usr/bin/time -f "%e %S %U %M %F %R %w %c" -o /tmp/cold/t-med $bin convert $bag -o $out --json --quiet > $out.json 2>/dev/null
    echo "$w $i load=$(cut -d' ' -f1 /proc/loadavg) $(cat /tmp/cold/t-med) | $(python3 -c "
import json; m=json.load(open('$out.json'))['memory']; print('peak_rss',m['peak_rss'],'anon',m['peak_rss_anon'],'file',m['peak_rss_file'],'start',m['start_rss'],'exceeded',m['ceiling_exceeded'])")"
    (( i > 1 )) && rm -rf $out
  done
done
