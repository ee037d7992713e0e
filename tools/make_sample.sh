#!/usr/bin/env bash
# Remake the demo's bundled sample clip (examples/sample/cartoon_320x180.mp4): one held-out openclipart scene
# (art that training never sees), rendered at 640x360, area-downscaled to 320x180 and H.264-compressed (CRF 28).
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.venv/bin/vqdsr render-clips --out "$work/r" --clips 1 --frames 96 --size 640x360 --seed 7 --split heldout --cut-prob 1
ffmpeg -v error -y -framerate 24 -i "$work/r/clip_0000/%08d.png" -vf "scale=320:180:flags=area,format=yuv420p" \
    -c:v libx264 -preset slow -crf 28 -x264-params keyint=48 -movflags +faststart \
    -colorspace bt709 -color_primaries bt709 -color_trc bt709 -color_range tv examples/sample/cartoon_320x180.mp4
ls -l examples/sample/cartoon_320x180.mp4
