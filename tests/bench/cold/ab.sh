#!/usr/bin/env bash
# usage: ab.sh N BAG LABEL=BIN LABEL=BIN ...  -> one line per run, alternating, order rotates each round
n=$1; bag=$2; shift 2
specs=("$@"); k=${#specs[@]}
evict() { python3 -c 'import os,sys; fd=os.open(sys.argv[1],os.O_RDONLY); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED); os.close(fd)' "$1"; }
vm() { awk '$1~/^(pgfault|pgmajfault|pgscan_kswapd|pgscan_direct|pgsteal_kswapd|pgsteal_direct|allocstall_normal|allocstall_movable|workingset_refault_file|pgpgin|thp_file_alloc|compact_stall|compact_migrate_scanned|compact_free_scanned|compact_isolated|compact_success|compact_fail|compact_daemon_wake|pgalloc_normal)$/{printf "%s=%s ",$1,$2}' /proc/vmstat; }
for i in $(seq $n); do
  for j in $(seq 0 $((k-1))); do
    idx=$(( (i % 2) ? j : k-1-j ))
    s=${specs[$idx]}; lab=${s%%=*}; bin=${s#*=}
    rm -rf /tmp/cold/ds; sync; evict $bag
    c=$(fincore -nb -o RES $bag); l=$(cut -d' ' -f1 /proc/loadavg)
    v0=$(vm)
    /usr/bin/time -f "%e %S %U %M %F %R %w %c" -o /tmp/cold/t $bin convert $bag -o /tmp/cold/ds --quiet > /dev/null 2>&1
    v1=$(vm)
    d=$(python3 - "$v0" "$v1" <<'PY'
import sys
a=dict(x.split('=') for x in sys.argv[1].split()); b=dict(x.split('=') for x in sys.argv[2].split())
print(' '.join(f"{k}={int(b[k])-int(a[k])}" for k in a if int(b[k])-int(a[k])))
PY
)
    echo "$lab $i cached=$c load=$l $(cat /tmp/cold/t) | $d"
  done
done
