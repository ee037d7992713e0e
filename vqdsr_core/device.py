"""One place for device and precision choice."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
_warned = {"bf16": False}  # the emulated-bf16 warning is given once per process


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of /proc/cpuinfo (empty where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    return frozenset(w for line in text.splitlines() if line.startswith("flags") for w in line.split(":", 1)[1].split())


def cpu_has_native_bf16() -> bool:
    """True on CPUs with AVX512-BF16 or AMX-BF16 (bf16 matmuls/convs run natively in oneDNN)."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def pick_device(device: str | torch.device = "auto", *, func: str = "vqdsr_core") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; otherwise the named device, checked to exist."""
    if isinstance(device, torch.device):
        dev = device
    elif device == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    else:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError) as e:
            raise ValueError(f"{func}: device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{func}: device {str(dev)!r} requested but CUDA is not available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"{func}: {str(dev)!r} does not exist ({torch.cuda.device_count()} CUDA devices)")
    elif dev.type != "cpu":
        raise ValueError(f"{func}: unsupported device {str(dev)!r} (use 'auto', 'cpu' or 'cuda[:N]')")
    return dev


def pick_dtype(precision: str, device: torch.device, *, func: str = "vqdsr_core") -> torch.dtype:
    """``"auto"`` -> fp16 on CUDA, bf16 on CPUs with native bf16, else fp32; warns once if bf16 would be emulated."""
    if precision not in PRECISIONS:
        raise ValueError(f"{func}: precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    if device.type == "cpu" and dtype == torch.float16:
        raise ValueError(f"{func}: fp16 is not supported on CPU; use 'bf16' or 'fp32'")
    if device.type == "cpu" and dtype == torch.bfloat16 and not cpu_has_native_bf16() and not _warned["bf16"]:
        _warned["bf16"] = True
        log.warning(
            "%s: precision 'bf16' on a CPU without native bf16 (no AVX512-BF16/AMX) is emulated, about 8-20x "
            "slower than fp32; use 'auto' (bf16 only where it is native) or 'fp32'",
            func,
        )
    return dtype
