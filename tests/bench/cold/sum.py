import sys,statistics as st,collections,re
R=collections.defaultdict(list)
for f in sys.argv[1:]:
  for l in open(f):
    p=l.split('|')[0].split(); lab=p[0]
    vals=list(map(float,p[-8:])); R[lab].append(vals+[ 'compact_stall' in l and int(re.search(r'compact_stall=(\d+)',l).group(1)) or 0, float(re.search(r'load=([\d.]+)',l).group(1))])
names=['wall','sys','user','maxrss_KiB','major','minor','vol_cs','invol_cs','compact_stall(system)','load']
for lab,rs in R.items():
  print(f"{lab}: n={len(rs)}")
  for i,n in enumerate(names):
    xs=[r[i] for r in rs]; print(f"   {n:22s} median {st.median(xs):10.2f}  [{min(xs):.2f}-{max(xs):.2f}]")
