"""Smoke tests of the speed benchmark (bench/): it runs on tiny frames and prints its table; no timing asserts."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/ is a checkout folder, not installed

from bench import runners, speed
from bench.onnx_cell import ZeroStateCell, export_cell_onnx
from vqdsr_core.models.vsr import RecurrentVSRNet


def test_cell_macs_match_layer_shapes():
    """The meta-device count equals the sum over conv layers of Cout*Cin*k*k per output pixel."""
    model = RecurrentVSRNet(num_feat=8, num_block=(3, 2, 1))
    h, w = 16, 24
    expect = 0
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            scale = 4 if "s4" in name else 2 if "s2" in name else 1  # output scale of the conv's branch
            ho, wo = h // scale, w // scale
            expect += ho * wo * m.out_channels * m.in_channels * m.kernel_size[0] * m.kernel_size[1]
    assert runners.cell_macs(model, h, w) == expect


def test_fast_cell_without_compiler_is_the_eager_cell(monkeypatch):
    model = RecurrentVSRNet(num_feat=8, num_block=(2, 1, 1)).eval()
    monkeypatch.setattr(runners, "have_compiler", lambda: False)
    x = torch.rand(1, 3, 8, 8)
    cell, how = runners.fast_cell(model, (x, x, x, torch.zeros(1, 8, 8, 8)), compile=True)
    assert "no C++ compiler" in how
    assert cell == model.cell


def test_zero_state_cell_equals_cell_with_zero_state(tmp_path):
    model = RecurrentVSRNet(num_feat=8, num_block=(2, 1, 1)).eval()
    x = torch.rand(1, 9, 12, 16)
    with torch.no_grad():
        ref, _ = model.cell(x[:, :3], x[:, 3:6], x[:, 6:], torch.zeros(1, 8, 12, 16))
        out = ZeroStateCell(model)(x)
    torch.testing.assert_close(out, ref.clamp(0, 1))
    path = export_cell_onnx(model, tmp_path / "cell.onnx", 12, 16)
    assert path.stat().st_size > 1000
    with pytest.raises(ValueError, match="export_cell_onnx"):
        export_cell_onnx(model, tmp_path / "bad.onnx", 10, 16)


def test_ort_cpu_matches_pytorch(tmp_path):
    vs = pytest.importorskip("vapoursynth")
    if not hasattr(vs.core, "ort"):
        pytest.skip("vs-mlrt ORT plugin (vapoursynth-mlrt-ort) not installed")
    import numpy as np

    from bench.onnx_cell import run_ort_cpu

    model = RecurrentVSRNet(num_feat=8, num_block=(2, 1, 1)).eval()
    lr = torch.rand(2, 3, 8, 12)
    path = export_cell_onnx(model, tmp_path / "cell.onnx", 8, 12)
    assert len(run_ort_cpu(path, lr)) == 2
    src = vs.core.std.BlankClip(format=vs.RGBS, width=12, height=8, length=1, color=[0.2, 0.5, 0.9])
    frame = vs.core.ort.Model([src, src, src], network_path=str(path), provider="CPU").get_frame(0)
    got = np.stack([np.asarray(frame[p]) for p in range(3)])
    x = torch.tensor([0.2, 0.5, 0.9]).view(1, 3, 1, 1).expand(1, 3, 8, 12)
    with torch.no_grad():
        ref = ZeroStateCell(model)(torch.cat([x, x, x], 1))[0].numpy()
    assert np.abs(got - ref).max() < 1e-4


def test_benchmark_runs_on_two_tiny_frames_and_prints_its_table(capsys, tmp_path):
    out_json = tmp_path / "bench.json"
    args = ["--size", "16x16", "--frames", "2", "--warmup", "0", "--compile", "off", "--conv-iters", "1"]
    args += ["--skip", "vspipe,ncnn,animevideov3,memory", "--json", str(out_json)]
    assert speed.main(args) == 0
    out = capsys.readouterr().out
    assert "16x16 LR -> 64x64" in out
    per_px = runners.cell_macs(RecurrentVSRNet(), 16, 16) / 256 / 1e6
    assert f"{per_px:.4f} M multiply-adds per LR pixel" in out
    for name in ("limit: conv 64->64 3x3", "plain loop: eager, NCHW", "plain loop: fast recipe", "vs-mlrt ORT"):
        lines = [ln for ln in out.splitlines() if ln.startswith(name)]
        assert lines, f"row {name!r} missing"
        for ln in lines:
            assert re.search(r"(fp32|bf16)\s+\d+\.\d{3}\s+(\d+\.\d{3}|-)\s+\d+\.\d\d", ln) or "not measured" in ln, ln
    assert re.search(r"GPU.*not measured: no GPU available", out) or torch.cuda.is_available()
    assert "quality: PSNR vs HR fp32" in out
    assert out_json.is_file() and '"rows"' in out_json.read_text()


def test_memory_run_reports_rss():
    model = RecurrentVSRNet(num_feat=8, num_block=(2, 1, 1)).eval()
    lr, _ = runners.cartoon_clip(3, 8, 8)
    mem = runners.memory_run(model, lr, torch.float32, 4, compile=False)
    assert mem["frames"] == 4 and mem["rss_end_mb"] > 0
    assert mem["peak_rss_mb"] >= 0.95 * mem["rss_end_mb"]  # ru_maxrss and statm round differently


def test_vspipe_run_cycles_frames_and_samples_its_rss(tmp_path):
    """The RSS run renders ``length`` frames through vspipe by cycling the input, one RSS sample per frame."""
    from vqdsr_core.weights import save_weights

    cfg = {"num_feat": 8, "num_block": [2, 1, 1]}
    weights = save_weights(tmp_path / "tiny.safetensors", RecurrentVSRNet(**cfg), config=cfg, arch="vqdsr_vsr")
    lr, _ = runners.cartoon_clip(3, 8, 8)
    times, wall, rss = runners.run_vspipe(lr, weights, "fp32", tmp_path, malloc=True, length=7)
    assert len(times) == 6 and wall > 0
    assert sorted(n for n, _ in rss) == list(range(7))
    assert all(100 < mb < 1e5 for _, mb in rss)  # a Python + torch process, in MB


def test_bad_options_are_clear_errors():
    with pytest.raises(ValueError, match=r"bench\.speed: --size"):
        speed.main(["--size", "abc"])
    with pytest.raises(ValueError, match="unknown precision/step"):
        speed.main(["--size", "16x16", "--precision", "fp8"])


def test_gpu_step_pointed_at_the_cpu_measures_every_precision(tmp_path):
    """The GPU step's code (run on the CPU here): one row per precision, each output checked against the CPU
    fp32 loop, and the peer row."""
    import argparse

    parser = argparse.ArgumentParser()
    speed.add_arguments(parser)
    opts = ["--size", "16x16", "--frames", "2", "--warmup", "0", "--compile", "off", "--skip", "vspipe"]
    b = speed.Bench(parser.parse_args(opts))
    b.ours("fp32", tmp_path / "unused.safetensors", tmp_path)  # the CPU fp32 loop's outputs: the reference
    b.rows.clear()
    b.gpu(tmp_path / "unused.safetensors", tmp_path, device="cpu")
    rows = {(r.name, r.precision): r for r in b.rows}
    for p in ("fp32", "fp16", "bf16"):
        r = rows[("GPU (cpu): SequentialUpscaler.step", p)]
        assert r.sec is not None and r.roof_pct is None, r.note
        db = float(re.search(r"([\d.]+|inf) dB vs CPU fp32", r.note).group(1))
        assert db > (60 if p == "fp32" else 25), (p, r.note)
    assert rows[("GPU (cpu) peer: realesr-animevideov3, PyTorch", "fp16")].sec is not None
