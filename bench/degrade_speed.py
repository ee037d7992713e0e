"""Throughput of the degradation pipeline vs one VSR training step (``python -m bench.degrade_speed``).

Per core: torch and x264 run single-threaded, so pairs/s/core = 1 / (CPU seconds per pair). Measured on 15-frame
256x256 HR cartoon clips (paper defaults) without and with the VQ degradation (a small-width VQGAN by default),
and compared with one VSR training step at the paper's size (batch 1, 15 frames, 64x64 LR, forward + L1 +
backward + Adam, bf16 autocast when the CPU has native bf16). "pairs per step" = how many pairs one core makes in
the time one core needs for one training step; >= 1 means a single loader worker keeps up with the trainer.
Both CPU (process) time and wall time are reported; on a busy machine trust CPU time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np
import torch


def cartoon_clip(n: int, size: int, seed: int) -> torch.Tensor:
    """A synthetic (n, 3, size, size) cartoon clip (flat fills, outlines, motion) in [0, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    frames = np.empty((n, size, size, 3), np.uint8)
    shapes = [
        (rng.uniform(0.2, 0.8, 2) * size, rng.uniform(0.1, 0.3, 2) * size, rng.integers(0, 255, 3)) for _ in range(6)
    ]
    for t in range(n):
        img = np.broadcast_to(rng.integers(120, 255, 3) if t == 0 else frames[0, 0, 0], (size, size, 3)).copy()
        for (cx, cy), (rx, ry), col in shapes:
            d = ((xx - cx - 2 * t) / rx) ** 2 + ((yy - cy - t) / ry) ** 2
            img[d <= 1] = col
            img[(d > 0.8) & (d <= 1)] = (20, 20, 30)
        frames[t] = img
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255)


def timed(fn, repeats: int) -> tuple[float, float]:
    """Median (cpu seconds, wall seconds) of ``repeats`` calls after one warm-up call."""
    fn(-1)
    cpu, wall = [], []
    for i in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        fn(i)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return statistics.median(cpu), statistics.median(wall)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=8, help="timed pairs / steps per case (median)")
    ap.add_argument("--frames", type=int, default=15)
    ap.add_argument("--hr", type=int, default=256, help="HR crop size")
    ap.add_argument("--vqgan-width", type=int, default=32, help="VQGAN width (128 = the paper's 121M model)")
    ap.add_argument("--vqgan-dtype", choices=("fp32", "bf16"), default="fp32", help="VQGAN precision")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    from vqdsr_core.degrade.codec import STATS
    from vqdsr_core.degrade.pipeline import DegradationConfig, make_pair
    from vqdsr_core.device import cpu_has_native_bf16
    from vqdsr_core.models.vqgan import MultiScaleVQGAN
    from vqdsr_core.models.vsr import RecurrentVSRNet

    hr = cartoon_clip(args.frames, args.hr, 0)
    torch.manual_seed(0)
    vq_dtype = torch.bfloat16 if args.vqgan_dtype == "bf16" else torch.float32
    vqgan = MultiScaleVQGAN(width=args.vqgan_width).eval().to(vq_dtype)
    results: dict[str, object] = {
        "frames": args.frames,
        "hr": args.hr,
        "vqgan_width": args.vqgan_width,
        "vqgan_dtype": args.vqgan_dtype,
    }
    for name, cfg, model in (
        ("basic", DegradationConfig(), None),
        ("vqd", DegradationConfig(vq=True), vqgan),
    ):
        cpu, wall = timed(lambda i, cfg=cfg, model=model: make_pair(hr, 1000 + i, cfg, model), args.repeats)
        results[name] = {"cpu_s_per_pair": cpu, "wall_s_per_pair": wall, "pairs_per_s_per_core": 1 / cpu}

    net = RecurrentVSRNet()
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    lr_clip = torch.rand(1, args.frames, 3, args.hr // 4, args.hr // 4)
    gt = torch.rand(1, args.frames, 3, args.hr, args.hr)
    bf16 = cpu_has_native_bf16()

    def step(_: int) -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = net(lr_clip)
        loss = torch.nn.functional.l1_loss(out.float(), gt)
        loss.backward()
        opt.step()

    cpu, wall = timed(step, max(2, args.repeats // 2))
    results["vsr_step"] = {"cpu_s": cpu, "wall_s": wall, "bf16_autocast": bf16}
    for name in ("basic", "vqd"):
        r = results[name]
        r["pairs_per_training_step"] = cpu / r["cpu_s_per_pair"]  # type: ignore[index]
    results["codec_retries"] = STATS["retries"]
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    print(f"degradation pipeline, {args.frames} frames at {args.hr}x{args.hr} HR, 1 thread (median of {args.repeats})")
    for name in ("basic", "vqd"):
        r = results[name]
        label = (
            "basic ops (no VQD)"
            if name == "basic"
            else f"with VQD (VQGAN width {args.vqgan_width}, {args.vqgan_dtype})"
        )
        print(
            f"  {label:32s} {r['pairs_per_s_per_core']:.2f} pairs/s/core  ({r['cpu_s_per_pair']:.3f} s CPU, "  # type: ignore[index]
            f"{r['wall_s_per_pair']:.3f} s wall per pair; {r['pairs_per_training_step']:.1f} pairs per training step)"  # type: ignore[index]
        )
    s = results["vsr_step"]
    print(
        f"  VSR training step (batch 1, {args.frames}x{args.hr // 4}^2 LR, bf16 autocast {s['bf16_autocast']}): "  # type: ignore[index]
        f"{s['cpu_s']:.3f} s CPU, {s['wall_s']:.3f} s wall"  # type: ignore[index]
    )
    print(f"  codec retries: {STATS['retries']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
