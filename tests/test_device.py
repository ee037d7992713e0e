"""Precision choice: ``auto`` means bf16 only where the CPU runs it natively; forced emulated bf16 warns once."""

from __future__ import annotations

import logging

import pytest
import torch

from vqdsr_core import device

CPU = torch.device("cpu")


@pytest.fixture
def emulated_bf16(monkeypatch):
    """A CPU without AVX512-BF16/AMX, with the once-per-process warning not given yet."""
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setitem(device._warned, "bf16", False)


def test_auto_is_bf16_only_with_native_support(monkeypatch):
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)
    assert device.pick_dtype("auto", CPU) == torch.bfloat16
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: False)
    assert device.pick_dtype("auto", CPU) == torch.float32


def test_forced_bf16_without_native_support_warns_once(emulated_bf16, caplog):
    with caplog.at_level(logging.WARNING, logger="vqdsr_core.device"):
        assert device.pick_dtype("bf16", CPU, func="vsvqdsr.upscale") == torch.bfloat16
        device.pick_dtype("bf16", CPU, func="train")
        device.pick_dtype("auto", CPU)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("vsvqdsr.upscale: precision 'bf16' on a CPU without")


def test_native_bf16_does_not_warn(monkeypatch, caplog):
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setitem(device._warned, "bf16", False)
    with caplog.at_level(logging.WARNING, logger="vqdsr_core.device"):
        device.pick_dtype("bf16", CPU)
    assert not caplog.records


def test_training_resolves_auto_and_warns_on_forced_bf16(emulated_bf16, caplog):
    from vqdsr_core.train.loop import setup_env

    assert setup_env("cpu", "auto").amp_dtype is None  # fp32: no autocast
    with caplog.at_level(logging.WARNING, logger="vqdsr_core.device"):
        assert setup_env("cpu", "bf16").amp_dtype == torch.bfloat16
    assert any("train: precision 'bf16' on a CPU without native bf16" in r.getMessage() for r in caplog.records)


def test_filter_warns_on_forced_bf16(emulated_bf16, caplog, tmp_path):
    vs = pytest.importorskip("vapoursynth")
    from conftest import cartoon_frames
    from test_plugin_support import clip_from_frames, tiny_vsr_weights

    import vsvqdsr

    weights = tiny_vsr_weights(tmp_path / "w.safetensors")
    with caplog.at_level(logging.WARNING, logger="vqdsr_core.device"):
        out = vsvqdsr.upscale(clip_from_frames(cartoon_frames(1, 8, 8)), weights=str(weights), precision="bf16")
    assert isinstance(out, vs.VideoNode)
    assert any(r.getMessage().startswith("vsvqdsr.upscale: precision 'bf16'") for r in caplog.records)


def test_cpu_flags_read_proc_cpuinfo():
    from pathlib import Path

    flags = device.cpu_flags()
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    assert ("avx2" in flags) == (" avx2 " in text.replace("\n", " "))
    assert device.cpu_has_native_bf16() == bool({"avx512_bf16", "amx_bf16"} & flags)
