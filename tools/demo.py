"""`make demo`: upscale the bundled sample clip through vspipe into out/, and write a side-by-side PNG.

    .venv/bin/python tools/demo.py [--src VIDEO] [--weights FILE] [--out DIR]

Runs ``vspipe -c y4m examples/upscale.vpy - | ffmpeg`` as a user would, then compares one frame: the input
bicubic-upscaled ×4 next to vsvqdsr's output.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "sample" / "cartoon_320x180.mp4"


def fail(msg: str) -> None:
    print(f"make demo: {msg}", file=sys.stderr)
    sys.exit(1)


def tool(name: str) -> str:
    venv_bin = Path(sys.executable).parent
    path = venv_bin / name if (venv_bin / name).exists() else shutil.which(name)
    if not path:
        fail(f"'{name}' not found; run `make demo` (it installs it) or put it on PATH")
    return str(path)


def side_by_side(src: Path, out_video: Path, png: Path, frame: int) -> None:
    import av
    import numpy as np
    import torch
    import torch.nn.functional as F

    def nth_frame(path: Path) -> np.ndarray:
        with av.open(str(path)) as c:
            for i, f in enumerate(c.decode(video=0)):
                if i == frame:
                    return f.to_ndarray(format="rgb24")
        fail(f"{path} has fewer than {frame + 1} frames")
        raise AssertionError

    lr, sr = nth_frame(src), nth_frame(out_video)
    x = torch.from_numpy(lr).permute(2, 0, 1)[None].float()
    bic = F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 255)
    bic = bic[0].permute(1, 2, 0).round().byte().numpy()
    gap = np.full((sr.shape[0], 8, 3), 255, np.uint8)
    img = np.concatenate([bic, gap, sr], axis=1)
    with av.open(str(png), "w") as c:  # one-frame PNG through FFmpeg's encoder
        s = c.add_stream("png")
        s.width, s.height, s.pix_fmt = img.shape[1], img.shape[0], "rgb24"
        for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            c.mux(p)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=SAMPLE)
    ap.add_argument("--weights", type=Path, default=None, help="weight file (default: the bundled model)")
    ap.add_argument("--out", type=Path, default=ROOT / "out")
    ap.add_argument("--frame", type=int, default=48, help="frame shown side by side")
    args = ap.parse_args()

    from vqdsr_core.weights import WeightsError, resolve_weights

    try:
        weights = resolve_weights(args.weights, "vsr")
    except WeightsError as e:
        fail(f"no trained VSR weights: {e}")
    if not args.src.is_file():
        fail(f"sample clip {args.src} is missing")
    args.out.mkdir(parents=True, exist_ok=True)
    out_video = args.out / "demo_vsvqdsr_x4.mp4"
    png = args.out / "demo_side_by_side.png"
    env = dict(os.environ, XDG_CONFIG_HOME=str(Path(sys.executable).parent.parent / "etc"))
    vspipe = [tool("vspipe"), "-c", "y4m", str(ROOT / "examples" / "upscale.vpy"), "-", "--arg", f"src={args.src}"]
    vspipe += ["--arg", f"weights={weights}"]
    ffmpeg = [tool("ffmpeg"), "-v", "error", "-y", "-i", "-", "-c:v", "libx264", "-crf", "16", "-preset", "medium"]
    ffmpeg += ["-pix_fmt", "yuv420p", str(out_video)]
    print(f"make demo: {' '.join(vspipe)} | {' '.join(ffmpeg)}", file=sys.stderr)
    t0 = time.perf_counter()
    pipe = subprocess.Popen(vspipe, stdout=subprocess.PIPE, env=env)
    enc = subprocess.run(ffmpeg, stdin=pipe.stdout, check=False)
    pipe.stdout.close()
    if pipe.wait() != 0 or enc.returncode != 0:
        fail(f"the encode failed (vspipe exit {pipe.returncode}, ffmpeg exit {enc.returncode}); see the messages above")
    took = time.perf_counter() - t0
    side_by_side(args.src, out_video, png, args.frame)
    print(f"make demo: done in {took:.1f} s", file=sys.stderr)
    print(f"  upscaled video: {out_video}", file=sys.stderr)
    print(f"  side by side (bicubic | vsvqdsr), frame {args.frame}: {png}", file=sys.stderr)


if __name__ == "__main__":
    main()
