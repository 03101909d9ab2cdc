#!/usr/bin/env bash
# Peak RSS (VmHWM via /usr/bin/time %M, KiB) of one ffmpeg encoder reading 600 rgb24 frames
# (testsrc2, 20 s at 30 fps) from a pipe, as bag2dataset runs it; the numbers behind
# src/memory/encoders.rs (docs/benchmarks.md, "Video encoder memory").
#   tests/bench/encoder_memory.sh SIZE LABEL ENCODER-ARGS...
#   e.g. SVT_LOG=1 tests/bench/encoder_memory.sh 640x480 av1 -c:v libsvtav1 -g 2 -crf 30 \
#          -preset 12 -svtav1-params lp=1:lookahead=0
set -euo pipefail
size=$1; label=$2; shift 2
tmp=$(mktemp -d)
ffmpeg -hide_banner -loglevel error -f lavfi -i "testsrc2=size=$size:rate=30" -t 20 \
  -f rawvideo -pix_fmt rgb24 - 2>/dev/null |
  /usr/bin/time -f "%M" -o "$tmp/peak" ffmpeg -hide_banner -nostdin -loglevel error \
    -f rawvideo -pix_fmt rgb24 -s "$size" -r 30 -i pipe:0 -an "$@" -pix_fmt yuv420p \
    -video_track_timescale 15360 -f mp4 -y "$tmp/out.mp4"
echo "$size $label $(cat "$tmp/peak") KiB $(stat -c %s "$tmp/out.mp4") bytes"
rm -rf "$tmp"
