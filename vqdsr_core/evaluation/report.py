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

PSNR_SLACK_DB = 0.5  # the default model may trail bicubic by at most this much PSNR-Y


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
    info = {
        "cpu": model,
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


def bar_check(rows: dict[str, dict], default: str, baseline: str = "bicubic") -> list[tuple[str, bool, str]]:
    """Default model vs bicubic: better SSIM-Y, LPIPS and tErr; PSNR-Y at most 0.5 dB lower.

    Returns (criterion, passed, "default value vs baseline value") per criterion.
    """
    d, b = rows[default], rows[baseline]
    checks = [
        ("PSNR-Y", d["psnr"] >= b["psnr"] - PSNR_SLACK_DB, f"{d['psnr']:.3f} >= {b['psnr']:.3f} - {PSNR_SLACK_DB}"),
        ("SSIM-Y", d["ssim"] > b["ssim"], f"{d['ssim']:.4f} > {b['ssim']:.4f}"),
        ("LPIPS", d["lpips"] < b["lpips"], f"{d['lpips']:.4f} < {b['lpips']:.4f}"),
        ("tErr", d["terr"] < b["terr"], f"{d['terr']:.5f} < {b['terr']:.5f}"),
    ]
    return [(name, bool(ok), text) for name, ok, text in checks]


def _fmt(v: float, digits: int) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if math.isinf(v):
        return "inf"
    return f"{v:.{digits}f}"


def table(rows: dict[str, dict]) -> list[str]:
    """Markdown table lines: one row per method."""
    lines = [
        "| method | PSNR-Y (dB) ↑ | SSIM-Y ↑ | LPIPS ↓ | tErr ↓ | s/frame |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        cells = [_fmt(r["psnr"], 3), _fmt(r["ssim"], 4), _fmt(r["lpips"], 4), _fmt(r["terr"], 5), _fmt(r["spf"], 3)]
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


def markdown(result: dict) -> str:
    """The QUALITY.md text for a result of ``evaluation.run.evaluate``."""
    m = result["machine"]
    lines = [
        "# vsvqdsr quality",
        "",
        f"- command: `{result['command']}`",
        f"- commit: `{result['commit'] or 'unknown (not a git checkout)'}`",
        f"- machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, torch {m['torch']} with {m['torch_threads']} "
        f"threads{', GPU ' + m['gpu'] if 'gpu' in m else ''}; {m['platform']}",
        f"- date: {result['date']}; wall time {result['wall_s']:.0f} s",
        f"- clips: {len(result['clips'])} from `{result['clips_root']}`, at most {result['frames']} frames each "
        f"({result['total_frames']} frames per track)",
        "",
        "Metrics: PSNR-Y / SSIM-Y on full-range BT.709 luma with a 4-px border cropped (`vqdsr_core.metrics`), "
        "mean over frames; LPIPS v0.1 VGG16 (offline weights) " + result["lpips_note"] + "; tErr = mean "
        "|(SR_t − SR_t−1) − (HR_t − HR_t−1)| over frame pairs, pairs across a scene cut excluded; s/frame = "
        "wall seconds per frame of the upscaling alone (model load excluded; bicubic/peer in PyTorch, vsvqdsr "
        "through `vsvqdsr.upscale` with its defaults on an RGB24 VapourSynth clip). Every output is rounded to "
        "8 bits before scoring.",
        "",
        "Methods: " + "; ".join(f"**{k}**: {v}" for k, v in result["methods"].items()),
        "",
    ]
    for track, tr in result["tracks"].items():
        lines += [f"## Track `{track}`: {tr['description']}", ""]
        lines += [f"Degradation params (per clip, `degrade_clip`): `{tr['params']}`", ""]
        lines += table(tr["rows"])
        lines.append("")
        if tr.get("bar"):
            bar = tr["bar"]
            verdict = "PASS" if all(c["pass"] for c in bar["criteria"]) else "FAIL"
            parts = [f"{c['name']} {'PASS' if c['pass'] else 'FAIL'} ({c['text']})" for c in bar["criteria"]]
            lines += [f"**Bar ({bar['model']} vs bicubic): {verdict}** — " + "; ".join(parts), ""]
        for crop in tr.get("crops", []):
            lines += [f"![{track} {crop['clip']} frame {crop['frame']}]({crop['file']})", ""]
            lines += [
                f"{crop['clip']} frame {crop['frame']}, HR box (y, x, size) {crop['box']}: "
                + " | ".join(crop["labels"]),
                "",
            ]
    return "\n".join(lines)
