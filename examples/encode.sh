#!/usr/bin/env bash
# Encode recipes for vsvqdsr (the README's "Encoding recipes"). Usage, from any folder:
#   examples/encode.sh x265   IN OUT.hevc [vspipe args]        # vspipe | x265
#   examples/encode.sh ffmpeg IN OUT.mkv  [vspipe args]        # vspipe | ffmpeg (libx264, audio copied from IN)
#   examples/encode.sh chunks IN OUT CHUNK [vspipe args]       # CHUNK-frame pieces (vspipe -s/-e), then joined:
#       OUT.hevc: x265 pieces joined by concatenation; any other OUT (.mkv, .mp4): libx264 pieces joined by the
#       concat demuxer (raw .hevc pieces cannot be stream-copied into a container by ffmpeg 5: no timestamps)
# vspipe args, e.g. --arg weights=model.safetensors --arg threads=8 --arg format=YUV420P10. Relative paths (IN, OUT
# and those in --arg) are taken from the folder encode.sh is run in. The encoders get the script's bit depth:
# x265 --output-depth 8/10/12, libx264 yuv420p or (10 and 12 bits) yuv420p10le.
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
x265 | ffmpeg | chunks) ;;
*)
    echo "encode.sh: unknown mode $mode (x265, ffmpeg or chunks)" >&2
    exit 2
    ;;
esac
case "$src" in /*) ;; *) src="$PWD/$src" ;; esac # ffmpeg reads IN too; the script gets the same absolute path

if [ "$mode" = chunks ]; then
    chunk=${1:?frames per chunk}
    shift
fi

# depth CMD...: run CMD on the y4m stream on stdin with $bits and $pix set from its header (C420p10: 10 bits;
# C420, C420jpeg: 8), so that x265 (--output-depth) and libx264 (-pix_fmt) keep the depth the script outputs
depth() {
    local head tag
    IFS= read -r head || return 1 # vspipe failed and has said why
    tag="${head##* C}"
    tag="${tag%% *}"
    bits=8
    if [[ $head == *" C"* && $tag =~ (p|mono)([0-9]+)$ ]]; then bits=${BASH_REMATCH[2]}; fi
    case "$bits" in
    8) pix=yuv420p ;;
    10 | 12) pix=yuv420p10le ;;
    *)
        echo "encode.sh: the script outputs $bits-bit video; add --arg format=YUV420P10 (encoders take 8-12 bits)" >&2
        return 2
        ;;
    esac
    { printf '%s\n' "$head" && cat; } | "$@"
}
x265_enc() { x265 --log-level warning --y4m - --output-depth "$bits" --crf 18 -o "$1"; }
x264_enc() { ffmpeg -v warning -y -i - -c:v libx264 -crf 16 -pix_fmt "$pix" "$1"; }
ffmpeg_enc() {
    ffmpeg -v warning -y -i - -i "$src" -map 0:v -map '1:a?' -c:v libx264 -crf 16 -pix_fmt "$pix" -c:a copy "$1"
}

case "$mode" in
x265)
    "$vspipe" -p -c y4m "$vpy" - --arg src="$src" "$@" | depth x265_enc "$out"
    ;;
ffmpeg)
    "$vspipe" -p -c y4m "$vpy" - --arg src="$src" "$@" | depth ffmpeg_enc "$out"
    ;;
chunks)
    total=$("$vspipe" -i "$vpy" - --arg src="$src" "$@" | awk '/^Frames:/ {print $2}')
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    ext=mkv enc=x264_enc
    case "$out" in *.hevc | *.265 | *.h265) ext=hevc enc=x265_enc ;; esac
    : >"$tmp/list.txt"
    for ((s = 0; s < total; s += chunk)); do
        e=$((s + chunk - 1 < total - 1 ? s + chunk - 1 : total - 1))
        piece="$tmp/$(printf '%08d' "$s").$ext"
        "$vspipe" -p -c y4m -s "$s" -e "$e" "$vpy" - --arg src="$src" "$@" | depth "$enc" "$piece"
        echo "file '$piece'" >>"$tmp/list.txt"
    done
    joined="$tmp/joined.${out##*.}"
    if [ "$ext" = hevc ]; then
        cat "$tmp"/*.hevc >"$joined" # each piece starts with its own headers and an IDR frame
    else
        ffmpeg -v warning -y -f concat -safe 0 -i "$tmp/list.txt" -c copy "$joined"
    fi
    mv "$joined" "$out"
    ;;
esac
