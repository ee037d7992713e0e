"""The evaluation report: machine/commit facts, per-track markdown tables, the "bar" check and side-by-side crops."""

from __future__ import annotations

import math
import os
import platform
import subprocess
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..metrics import rgb_to_y


def machine_info() -> dict:
    """CPU model (lscpu), logical CPUs, torch threads, GPU name if any, platform."""
    model = platform.processor() or "unknown"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10, check=False).stdout
        for line in out.splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except (OSError, subprocess.SubprocessError):
        pass
    from ..device import cpu_flags

    info = {
        "cpu": model,
        "cpu_flags": sorted({"avx2", "avx512f", "avx512_bf16", "amx_bf16"} & cpu_flags()),  # what sets the speed
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "torch": torch.__version__,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def git_commit(repo: Path | None = None) -> str | None:
    """``git rev-parse HEAD`` of the checkout holding vqdsr_core (plus "-dirty" when tracked files changed)."""
    repo = repo or Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if dirty else "")


PEER = "realesr-animevideov3"
PSNR_PEER_SLACK_DB = 0.2  # the default may trail the peer by at most this much PSNR-Y
PSNR_BICUBIC_SLACK_DB = 0.3  # ... and bicubic by at most this much
SCALE_255 = 255.0  # tE and still flicker are shown on the 0-255 scale (results.json keeps the metrics' 0-1 scale)


def bar_check(
    rows: dict[str, dict], default: str, peer: str = PEER, baseline: str = "bicubic"
) -> list[tuple[str, bool | None, str]]:
    """The default model's targets: tE below the peer's, LPIPS at or below the peer's, PSNR-Y >= peer - 0.2 dB and
    >= bicubic - 0.3 dB, SSIM-Y above bicubic's, still flicker at or below the peer's.

    Returns (criterion, passed, "default value vs target") per criterion; passed is ``None`` when it cannot be
    measured (no peer row, or no still frame pair in the set).
    """
    d = rows[default]
    checks = [
        ("tE < peer", peer, "terr", "<", 0.0, SCALE_255, 3),
        ("LPIPS ≤ peer", peer, "lpips", "<=", 0.0, 1.0, 4),
        (f"PSNR-Y ≥ peer − {PSNR_PEER_SLACK_DB}", peer, "psnr", ">=", -PSNR_PEER_SLACK_DB, 1.0, 2),
        (f"PSNR-Y ≥ bicubic − {PSNR_BICUBIC_SLACK_DB}", baseline, "psnr", ">=", -PSNR_BICUBIC_SLACK_DB, 1.0, 2),
        ("SSIM-Y > bicubic", baseline, "ssim", ">", 0.0, 1.0, 4),
        ("still flicker ≤ peer", peer, "still", "<=", 0.0, SCALE_255, 3),
    ]
    out = []
    for name, ref, key, op, slack, scale, digits in checks:
        value = d.get(key, math.nan)
        target = rows[ref].get(key, math.nan) + slack if ref in rows else math.nan
        text = f"{_fmt(value * scale, digits)} vs {op} {_fmt(target * scale, digits)}"
        if ref not in rows:
            out.append((name, None, f"no {ref} row"))
            continue
        if math.isnan(value) or math.isnan(target):
            out.append((name, None, "no still frame pairs" if key == "still" else text))
            continue
        ok = {"<": value < target, "<=": value <= target, ">": value > target, ">=": value >= target}[op]
        out.append((name, bool(ok), text))
    return out


def verdict(passed: list[bool | None]) -> str:
    """ "PASS" (every criterion measured and met), "FAIL" (one missed) or "INCOMPLETE" (one not measurable)."""
    if any(p is False for p in passed):
        return "FAIL"
    return "PASS" if all(p is True for p in passed) else "INCOMPLETE"


def bar_result(rows: dict[str, dict], default: str) -> dict:
    """``bar_check`` as JSON: {"model", "verdict", "criteria": [{"name", "pass", "text"}, ...]}."""
    crit = bar_check(rows, default)
    return {
        "model": default,
        "verdict": verdict([ok for _, ok, _ in crit]),
        "criteria": [{"name": n, "pass": ok, "text": t} for n, ok, t in crit],
    }


def slug(name: str) -> str:
    """A set name as a file-name part (letters, digits, '-' and '_')."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name) or "set"


def _fmt(v: float, digits: int) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if math.isinf(v):
        return "inf"
    return f"{v:.{digits}f}"


def table(rows: dict[str, dict]) -> list[str]:
    """Markdown table lines: one row per method (tE and still flicker on the 0-255 scale)."""
    lines = [
        "| method | PSNR-Y (dB) ↑ | SSIM-Y ↑ | LPIPS ↓ | tE (0–255) ↓ | still flicker (0–255) ↓ | s/frame |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        cells = [_fmt(r["psnr"], 3), _fmt(r["ssim"], 4), _fmt(r["lpips"], 4)]
        cells += [_fmt(r["terr"] * SCALE_255, 3), _fmt(r["still"] * SCALE_255, 3), _fmt(r["spf"], 3)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


# ---------------------------------------------------------------------------------------------------- crops


def crop_box(hr: Tensor, size: int = 192, stride: int = 16) -> tuple[int, int, int]:
    """(y, x, s) of the ``size`` px HR square with the most luma gradient energy; multiples of 4, inside the frame."""
    h, w = hr.shape[-2:]
    s = max(4, min(size, h, w) // 4 * 4)
    y = rgb_to_y(hr[:3].double())[0]
    energy = torch.zeros_like(y)
    energy[:, 1:] += (y[:, 1:] - y[:, :-1]).abs()
    energy[1:, :] += (y[1:, :] - y[:-1, :]).abs()
    integral = torch.nn.functional.pad(energy.cumsum(0).cumsum(1), (1, 0, 1, 0))
    best, best_yx = -1.0, (0, 0)
    for y0 in range(0, h - s + 1, stride):
        for x0 in range(0, w - s + 1, stride):
            e = float(integral[y0 + s, x0 + s] - integral[y0, x0 + s] - integral[y0 + s, x0] + integral[y0, x0])
            if e > best:
                best, best_yx = e, (y0, x0)
    return best_yx[0], best_yx[1], s


def _to_u8(x: Tensor) -> np.ndarray:
    return x.clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def panel_strip(panels: list[tuple[str, Tensor]], gap: int = 4, label_h: int = 14) -> np.ndarray:
    """Labelled (3, s, s) panels side by side on a dark background -> (H, W, 3) uint8."""
    from PIL import Image, ImageDraw

    s_h, s_w = panels[0][1].shape[-2:]
    width = len(panels) * s_w + (len(panels) - 1) * gap
    canvas = Image.new("RGB", (width, s_h + label_h), (24, 24, 24))
    draw = ImageDraw.Draw(canvas)
    for i, (label, img) in enumerate(panels):
        x = i * (s_w + gap)
        canvas.paste(Image.fromarray(_to_u8(img)), (x, label_h))
        draw.text((x + 2, 1), label[: max(4, s_w // 6)], fill=(235, 235, 235))
    return np.asarray(canvas)


def crop_panels(lr: Tensor, sr: dict[str, Tensor], hr: Tensor, box: tuple[int, int, int]) -> list[tuple[str, Tensor]]:
    """LR (nearest x4) | each method | HR, all cut to the HR ``box`` (frames (3, H, W))."""
    y, x, s = box
    lr_c = lr[:, y // 4 : (y + s) // 4, x // 4 : (x + s) // 4]
    lr_up = lr_c.repeat_interleave(4, dim=-2).repeat_interleave(4, dim=-1)
    out = [("LR (nearest x4)", lr_up)]
    out += [(name, img[:, y : y + s, x : x + s]) for name, img in sr.items()]
    out.append(("HR", hr[:, y : y + s, x : x + s]))
    return out


# ---------------------------------------------------------------------------------------------------- markdown


def _parts(tr: dict) -> dict[str, dict]:
    """The scored parts of a track: each set, plus "pooled" (the track itself) when there are several."""
    return {**tr["sets"], "pooled": tr} if len(tr["sets"]) > 1 else dict(tr["sets"])


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _word(passed: bool | None) -> str:
    return "n/a" if passed is None else ("PASS" if passed else "FAIL")


def bar_summary(result: dict) -> list[str]:
    """Markdown: one row per track and set (and pooled), each criterion PASS / FAIL / n/a with its numbers."""
    rows = [(t, name, part["bar"]) for t, tr in result["tracks"].items() for name, part in _parts(tr).items()]
    rows = [r for r in rows if r[2]]
    if not rows:
        return []
    names = [c["name"] for c in rows[0][2]["criteria"]]
    lines = [
        f"## Bar: `{rows[0][2]['model']}` against its targets",
        "",
        "Each cell: verdict (the model's value vs the target); tE and still flicker on the 0–255 scale.",
        "",
        "| track | set | " + " | ".join(names) + " | verdict |",
        "|---|---|" + "---|" * len(names) + "---|",
    ]
    for track, name, bar in rows:
        cells = [f"{_word(c['pass'])} ({c['text']})" for c in bar["criteria"]]
        lines.append(f"| {track} | {name} | " + " | ".join(cells) + f" | **{bar['verdict']}** |")
    return [*lines, ""]


def markdown(result: dict) -> str:
    """The QUALITY.md text for a result of ``evaluation.run.evaluate``."""
    m = result["machine"]
    sets = result["sets"]
    set_lines = []
    for name, s in sets.items():
        cuts = sum(len(c["cuts"]) for c in s["clips"])
        line = (
            f"  - `{name}`: {_n(len(s['clips']), 'clip')} from `{s['root']}`, at most {result['frames']} frames "
            f"each ({s['frames']} frames per track, {_n(cuts, 'hard cut')})"
        )
        set_lines.append(line + (f"; art: {' / '.join(s['sources'])}" if s.get("sources") else ""))
    lines = [
        "# vsvqdsr quality",
        "",
        f"- command: `{result['command']}`",
        f"- commit: `{result['commit'] or 'unknown (not a git checkout)'}`",
        f"- machine: {m['cpu']} ({', '.join(m.get('cpu_flags', [])) or 'no AVX2'}), {m['logical_cpus']} logical CPUs, "
        f"torch {m['torch']} with {m['torch_threads']} "
        f"threads{', GPU ' + m['gpu'] if 'gpu' in m else ''}; {m['platform']}",
        f"- date: {result['date']}; wall time {result['wall_s']:.0f} s",
        "- held-out sets" + (" (each scored alone, then pooled)" if len(sets) > 1 else "") + ":",
        *set_lines,
        "",
        "Metrics: PSNR-Y / SSIM-Y on full-range BT.709 luma with a 4-px border cropped (`vqdsr_core.metrics`), "
        "mean over frames; LPIPS v0.1 VGG16 (offline weights) " + result["lpips_note"] + "; tE = mean "
        "|(SR_t − SR_t−1) − (HR_t − HR_t−1)| over frame pairs, pairs across a scene cut excluded; still flicker = "
        "the same over the pairs where the HR does not change (HR_t = HR_t−1: held shots, drawings on twos under a "
        "still camera), i.e. shimmer the HR does not have; both on the 0–255 scale (results.json keeps 0–1); "
        "s/frame = wall seconds per frame of the upscaling alone (model load excluded; bicubic/peer in PyTorch, "
        "vsvqdsr through `vsvqdsr.upscale` with its defaults on an RGB24 VapourSynth clip). Every output is rounded "
        "to 8 bits before scoring. Pooled rows weight every clip of every set as within one set (frames, crops, "
        "pairs).",
        "",
        "Methods: " + "; ".join(f"**{k}**: {v}" for k, v in result["methods"].items()),
        "",
        *bar_summary(result),
    ]
    for track, tr in result["tracks"].items():
        lines += [f"## Track `{track}`: {tr['description']}", ""]
        lines += [f"Degradation params (per clip, `degrade_clip`): `{tr['params']}`", ""]
        for name, part in _parts(tr).items():
            n = next(iter(part["rows"].values()))
            title = "Pooled: every set" if part is tr else f"Set `{name}`"
            lines += [
                f"### {title} ({n['frames']} frames, {n['terr_pairs']} frame pairs, {n['still_pairs']} of them still)",
                "",
                *table(part["rows"]),
                "",
            ]
            if part.get("bar"):
                bar = part["bar"]
                missed = [c["name"] for c in bar["criteria"] if c["pass"] is False]
                lines += [
                    f"**Bar ({bar['model']}): {bar['verdict']}**"
                    + (f"; missed: {', '.join(missed)}" if missed else ""),
                    "",
                ]
            for crop in part.get("crops", []):
                caption = f"{crop['clip']} frame {crop['frame']}, HR box (y, x, size) {crop['box']}: "
                caption += " | ".join(crop["labels"])
                if crop.get("credit"):
                    caption += f". Art: {crop['credit']}"
                lines += [f"![{track} {name} {crop['clip']} frame {crop['frame']}]({crop['file']})", "", caption, ""]
    return "\n".join(lines)
