"""TensorRT engine cache logic (keys, atomic builds, rebuild on a bad engine, stdout guard) without TensorRT."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from vsvqdsr import trt

BASE = {
    "weights_sha256": "a" * 64,
    "feedback": False,
    "shape": (272, 480),
    "precision": "fp16",
    "gpu_name": "NVIDIA H100",
    "trt_version": "10.9/2.14",
}


def test_engine_key_changes_with_every_field(tmp_path):
    key = trt.engine_key(**BASE)
    changed = {
        "weights_sha256": "b" * 64,
        "feedback": True,
        "shape": (272, 484),
        "precision": "fp32",
        "gpu_name": "NVIDIA A100",
        "trt_version": "10.10/2.14",
    }
    keys = {trt.engine_key(**{**BASE, k: v}) for k, v in changed.items()}
    assert key not in keys and len(keys) == len(changed)
    assert trt.engine_key(**BASE) == key
    assert trt.engine_path(key, tmp_path) == tmp_path / f"cell_{key[:32]}.ts"


def test_engine_path_defaults_to_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VSVQDSR_CACHE", str(tmp_path))
    assert trt.engine_path("f" * 64).parent == tmp_path / "trt"


def test_load_or_build_builds_once_atomically_and_rebuilds_bad_engines(tmp_path):
    path = tmp_path / "trt" / "cell_x.ts"
    builds: list[str] = []

    def build(tmp):
        assert tmp.parent == path.parent and tmp != path and not path.exists()
        builds.append(tmp.name)
        tmp.write_bytes(b"E" * 1024)

    def load(p):
        data = p.read_bytes()
        if not data.startswith(b"E"):
            raise RuntimeError("bad engine")
        return len(data)

    assert trt.load_or_build(path, build, load) == 1024
    assert trt.load_or_build(path, build, load) == 1024
    assert len(builds) == 1
    path.write_bytes(b"garbage from an older TensorRT")
    assert trt.load_or_build(path, build, load) == 1024
    assert len(builds) == 2
    assert sorted(p.name for p in path.parent.iterdir()) == ["cell_x.ts"]  # no temp files left


def test_failed_build_leaves_nothing(tmp_path):
    path = tmp_path / "cell_y.ts"

    def build(tmp):
        tmp.write_bytes(b"x")  # implausibly small

    with pytest.raises(RuntimeError, match="implausibly small"):
        trt.load_or_build(path, build, lambda p: p)
    assert list(tmp_path.iterdir()) == []


def test_stdout_guard_sends_native_writes_to_stderr():
    code = (
        "import os, sys\n"
        "from vsvqdsr.trt import stdout_to_stderr\n"
        "with stdout_to_stderr():\n"
        "    print('py-print'); os.write(1, b'native-write\\n')\n"
        "print('after')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, env=dict(os.environ))
    assert res.stdout == b"after\n"
    assert b"py-print" in res.stderr and b"native-write" in res.stderr


def test_require_trt_explains_what_is_missing():
    with pytest.raises(RuntimeError, match="trt=True needs"):
        trt.require_trt("vsvqdsr.upscale")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU with CUDA")
def test_trt_cell_matches_pytorch(tmp_path, monkeypatch):
    pytest.importorskip("torch_tensorrt", reason="torch-tensorrt is not installed")
    from vqdsr_core.inference import SequentialUpscaler, upscale_frames
    from vqdsr_core.models.vsr import RecurrentVSRNet

    monkeypatch.setenv("VSVQDSR_CACHE", str(tmp_path))
    torch.manual_seed(0)
    frames = list(torch.rand(3, 3, 64, 64, device="cuda"))
    model = RecurrentVSRNet().cuda()
    ref = upscale_frames(SequentialUpscaler(model, device="cuda", dtype=torch.float32), frames)
    up = SequentialUpscaler(model, device="cuda", dtype=torch.float32)
    trt.compile_cell(up, (64, 64), func="test")
    got = upscale_frames(up, frames)
    assert all(float((a - b).abs().max()) < 1e-2 for a, b in zip(ref, got))
    assert len(list((tmp_path / "trt").glob("cell_*.ts"))) == 1
