#!/usr/bin/env bash
# Encode recipes for vsvqdsr. Usage:
#   examples/encode.sh x265   IN OUT.hevc [extra vspipe args]   # vspipe | x265
#   examples/encode.sh ffmpeg IN OUT.mkv  [extra vspipe args]   # vspipe | ffmpeg (libx264, audio from IN)
#   examples/encode.sh chunks IN OUT.mkv  CHUNK [extra args]    # CHUNK-frame pieces (vspipe -s/-e), then joined
# Extra args go to vspipe, e.g. --arg weights=model.safetensors --arg threads=8 --arg format=YUV420P10.
#
# Chunks: each piece starts with a seek, so vsvqdsr.upscale warms its recurrent state up on the `warmup` frames
# before the piece (default 16); the joined result then matches one linear render within the tolerance given in
# the README (exact at scene cuts and in the first `warmup` frames). Pieces can run on different machines.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
vpy="$here/upscale.vpy"

# vspipe from a pip-installed VapourSynth in a venv needs that venv's config (`vapoursynth config`, written by
# tools/bootstrap.sh into .venv/etc); use the repo's venv when there is one.
vspipe=${VSPIPE:-vspipe}
if [ -x "$root/.venv/bin/vspipe" ] && [ -z "${VSPIPE:-}" ]; then
    vspipe="$root/.venv/bin/vspipe"
    if [ -f "$root/.venv/etc/vapoursynth/vapoursynth.toml" ]; then
        export XDG_CONFIG_HOME="${XDG_CONFIG_HOME:-$root/.venv/etc}"
    fi
fi

mode=${1:?usage: encode.sh x265|ffmpeg|chunks IN OUT [...]}
src=${2:?input video}
out=${3:?output file}
shift 3

case "$mode" in
x265)
    "$vspipe" -c y4m "$vpy" - --arg src="$src" "$@" | x265 --log-level warning --y4m - --crf 18 -o "$out"
    ;;
ffmpeg)
    "$vspipe" -c y4m "$vpy" - --arg src="$src" "$@" |
        ffmpeg -v warning -y -i - -i "$src" -map 0:v -map '1:a?' -c:v libx264 -crf 16 -pix_fmt yuv420p -c:a copy "$out"
    ;;
chunks)
    chunk=${1:?frames per chunk}
    shift
    total=$("$vspipe" -i "$vpy" - --arg src="$src" "$@" | awk '/^Frames:/ {print $2}')
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    : >"$tmp/list.txt"
    for ((s = 0; s < total; s += chunk)); do
        e=$((s + chunk - 1 < total - 1 ? s + chunk - 1 : total - 1))
        piece="$tmp/$(printf '%06d' "$s").mkv"
        "$vspipe" -c y4m -s "$s" -e "$e" "$vpy" - --arg src="$src" "$@" |
            ffmpeg -v warning -y -i - -c:v libx264 -crf 16 -pix_fmt yuv420p "$piece"
        echo "file '$piece'" >>"$tmp/list.txt"
    done
    joined="$tmp/joined.${out##*.}"
    ffmpeg -v warning -y -f concat -safe 0 -i "$tmp/list.txt" -c copy "$joined"
    mv "$joined" "$out"
    ;;
*)
    echo "encode.sh: unknown mode $mode (x265, ffmpeg or chunks)" >&2
    exit 2
    ;;
esac
