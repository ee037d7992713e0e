"""Packaging habits: the core never imports VapourSynth; the CLI answers --help; device/precision choice."""

import subprocess
import sys

import pytest
import torch

from vqdsr_core import device


def test_core_import_does_not_import_vapoursynth():
    code = (
        "import sys, pkgutil, importlib, vqdsr_core\n"
        "for m in pkgutil.walk_packages(vqdsr_core.__path__, 'vqdsr_core.'):\n"
        "    importlib.import_module(m.name)\n"
        "assert 'vapoursynth' not in sys.modules, 'vqdsr_core imported vapoursynth'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_help_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "vqdsr_core", "--help"], capture_output=True, text=True, check=True)
    assert "usage: vqdsr" in out.stdout


def test_pick_device_and_dtype():
    cpu = torch.device("cpu")
    assert device.pick_device("cpu") == cpu
    assert device.pick_dtype("fp32", cpu) == torch.float32
    assert device.pick_dtype("bf16", cpu) == torch.bfloat16
    auto = device.pick_dtype("auto", cpu)
    assert auto == (torch.bfloat16 if device.cpu_has_native_bf16() else torch.float32)
    with pytest.raises(ValueError, match="fp16 is not supported on CPU"):
        device.pick_dtype("fp16", cpu)
    with pytest.raises(ValueError, match="precision must be one of"):
        device.pick_dtype("int8", cpu)
    with pytest.raises(ValueError, match=r"unsupported device|device must be"):
        device.pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            device.pick_device("cuda")
