"""Read every message of a rosbag2 directory with rosbags and deserialize it (CDR)."""
import sys, time
from pathlib import Path
from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_typestore
t0 = time.time()
n = 0
nbytes = 0
with AnyReader([Path(sys.argv[1])], default_typestore=get_typestore(Stores.ROS2_HUMBLE)) as r:
    for conn, ts, raw in r.messages():
        r.deserialize(raw, conn.msgtype)
        n += 1
        nbytes += len(raw)
print(f"rosbags: {n} messages, {nbytes/1e6:.1f} MB payload, {time.time()-t0:.2f} s")
