"""Evict BAG, wait WAIT s (lets free page reporting hand the freed 2 MiB blocks to the host),
then read it front to back with 1 MiB preads; MODE 'kernel' = the kernel's readahead
(large folios), 'willneed' = posix_fadvise(WILLNEED) of each 8 MiB window first (base pages).
Prints wall, user, sys of the read loop."""
import os, resource, sys, time
bag, wait, mode = sys.argv[1], float(sys.argv[2]), sys.argv[3]
fd = os.open(bag, os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
time.sleep(wait)
size = os.fstat(fd).st_size; step = 1 << 20; win = 8 << 20; asked = 0
buf = bytearray(step); mv = memoryview(buf)
r0 = resource.getrusage(resource.RUSAGE_SELF); t = time.perf_counter()
off = 0
while off < size:
    if mode == 'willneed':
        while asked < min(size, off + step + win):
            os.posix_fadvise(fd, asked, win, os.POSIX_FADV_WILLNEED); asked += win
    n = os.preadv(fd, [mv], off); off += n
r1 = resource.getrusage(resource.RUSAGE_SELF)
print(f"{mode} wait={wait:g} wall {time.perf_counter()-t:.2f} user {r1.ru_utime-r0.ru_utime:.2f} sys {r1.ru_stime-r0.ru_stime:.2f}")
