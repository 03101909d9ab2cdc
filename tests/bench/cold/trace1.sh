#!/usr/bin/env bash
# usage: trace1.sh LABEL BIN BAG : cold convert under perf tracepoints; prints folio order histogram + ra stats
lab=$1; bin=$2; bag=$3
evict() { python3 -c 'import os,sys; fd=os.open(sys.argv[1],os.O_RDONLY); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED); os.close(fd)' "$1"; }
rm -rf /tmp/cold/ds-$lab; sync; evict $bag
perf record -q -o /tmp/cold/tp-$lab.data -e filemap:mm_filemap_add_to_page_cache -e readahead:page_cache_sync_ra -e readahead:page_cache_async_ra -e readahead:page_cache_ra_order -- $bin convert $bag -o /tmp/cold/ds-$lab --quiet >/dev/null 2>&1
perf script -i /tmp/cold/tp-$lab.data -F event,trace 2>/dev/null > /tmp/cold/tp-$lab.txt
python3 - /tmp/cold/tp-$lab.txt $lab <<'PY'
import sys,re,collections
ev=collections.Counter(); orders=collections.Counter(); sync=[];asyn=[]
for l in open(sys.argv[1]):
    if 'mm_filemap_add_to_page_cache' in l:
        m=re.search(r'order=(\d+)',l); orders[int(m.group(1))]+=1
    elif 'page_cache_sync_ra' in l:
        ev['sync']+=1; sync.append(l)
    elif 'page_cache_async_ra' in l:
        ev['async']+=1; asyn.append(l)
    elif 'ra_order' in l: ev['ra_order']+=1
print(sys.argv[2], dict(ev), 'folio orders', sorted(orders.items()), 'pages', sum(c<<o for o,c in orders.items()))
for x in (sync[:3]+asyn[:3]): print('  ',x.strip()[:220])
PY
