#!/usr/bin/env bash
lab=$1; bin=$2; bag=$3
evict() { python3 -c 'import os,sys; fd=os.open(sys.argv[1],os.O_RDONLY); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED); os.close(fd)' "$1"; }
rm -rf /tmp/cold/ds-$lab; sync; evict $bag
perf record -q -g -F 499 -o /tmp/cold/pr-$lab.data -- /usr/bin/time -f "%e %S %U %M %F %R %w %c" -o /tmp/cold/pt-$lab $bin convert $bag -o /tmp/cold/ds-$lab --quiet >/dev/null 2>&1
perf report -i /tmp/cold/pr-$lab.data --no-children --sort sym --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -30 > /tmp/cold/pr-$lab.top
perf report -i /tmp/cold/pr-$lab.data --children --sort sym --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | grep '\[k\]' | head -40 > /tmp/cold/pr-$lab.children
