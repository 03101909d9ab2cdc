#!/usr/bin/env python3
"""Markdown table of a tests/bench/run.sh results directory.

    report.py OUT BAG...

Reads OUT/runs/<bag>@<mode>@<run>.{time,json,err}: `/usr/bin/time -v` output, the converter's
--json report, stderr. Per (bag, mode): wall time median [min-max], MB/s = bag bytes / median
wall, kernel peak RSS (ru_maxrss, largest of the runs), the converter's own peak anon and
file-backed RSS (largest of the runs), and failures with their error message.
"""

import json
import os
import re
import statistics
import sys
from collections import defaultdict


def parse_time(path):
    wall = rss = status = None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("Elapsed (wall clock) time"):
                t = line.rsplit(" ", 1)[1]
                parts = [float(p) for p in t.split(":")]
                wall = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
            elif line.startswith("Maximum resident set size"):
                rss = int(line.rsplit(" ", 1)[1]) * 1024
            elif line.startswith("Exit status"):
                status = int(line.rsplit(" ", 1)[1])
            elif line.startswith("Command exited with non-zero status"):
                status = int(line.rsplit(" ", 1)[1])
    return wall, rss, status


def mib(b):
    return b / 1048576


def main():
    out, bags = sys.argv[1], sys.argv[2:]
    runs = defaultdict(list)
    for name in sorted(os.listdir(os.path.join(out, "runs"))):
        m = re.match(r"(.+)@(.+)@(\d+)\.time$", name)
        if not m:
            continue
        bag, mode, i = m.groups()
        stem = os.path.join(out, "runs", name[: -len(".time")])
        wall, rss, status = parse_time(stem + ".time")
        report = None
        try:
            with open(stem + ".json") as f:
                text = f.read()
            report = json.loads(text) if text.strip().startswith("{") else None
        except (OSError, ValueError):
            pass
        err = ""
        if os.path.exists(stem + ".err"):
            with open(stem + ".err") as f:
                lines = [l.strip() for l in f if l.startswith("error:")]
            err = lines[-1] if lines else ""
        runs[(bag, mode)].append(dict(wall=wall, rss=rss, status=status, report=report, err=err))

    sizes = {os.path.basename(b)[: -len(".bag")]: os.path.getsize(b) for b in bags}
    order = ["info", "default", "32MiB", "4G", "dump-sensors"]
    label = {
        "info": "info",
        "default": "convert (default ceiling, 64 MiB)",
        "32MiB": "convert --max-memory 32MiB",
        "4G": "convert --max-memory 4G (unlimited)",
        "dump-sensors": "dump -t /sensors_data_raw (full decode)",
    }
    print("| bag | size | mode | runs ok | wall s (median [min-max]) | MB/s | peak RSS MiB (time -v) | own peak anon / file MiB | frames |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    failures = []
    for bag in sizes:
        for mode in sorted({m for (b, m) in runs if b == bag}, key=lambda m: order.index(m) if m in order else 99):
            rs = runs[(bag, mode)]
            ok = [r for r in rs if r["status"] == 0]
            for r in rs:
                if r["status"] != 0:
                    failures.append((bag, mode, r["status"], r["err"], r["rss"]))
            size = sizes[bag]
            if not ok:
                print(f"| {bag} | {size / 1e9:.2f} GB | {label.get(mode, mode)} | 0/{len(rs)} | failed | | "
                      f"{mib(max(r['rss'] for r in rs)):.1f} | | |")
                continue
            walls = [r["wall"] for r in ok]
            med = statistics.median(walls)
            rss = max(r["rss"] for r in ok)
            own = ""
            frames = ""
            reps = [r["report"] for r in ok if r["report"] and "memory" in r["report"]]
            if reps:
                anon = max(x["memory"]["peak_rss_anon"] for x in reps)
                file_ = max(x["memory"]["peak_rss_file"] for x in reps)
                own = f"{mib(anon):.1f} / {mib(file_):.1f}"
                frames = str(reps[0]["frames"])
            if mode == "info":
                wall_s = f"{med * 1000:.0f} ms [{min(walls) * 1000:.0f}-{max(walls) * 1000:.0f}]"
                rate = ""
            else:
                wall_s = f"{med:.2f} [{min(walls):.2f}-{max(walls):.2f}]"
                rate = f"{size / 1e6 / med:.0f}"
            print(f"| {bag} | {size / 1e9:.2f} GB | {label.get(mode, mode)} | {len(ok)}/{len(rs)} | {wall_s} | {rate} | "
                  f"{mib(rss):.1f} | {own} | {frames} |")
    if failures:
        print()
        print("Failed runs:")
        print()
        for bag, mode, status, err, rss in failures:
            print(f"- {bag} {mode}: exit {status}, peak RSS {mib(rss):.1f} MiB: `{err}`")
    with open(os.path.join(out, "machine.txt")) as f:
        print()
        print("```")
        print(f.read().rstrip())
        print("```")


if __name__ == "__main__":
    main()
