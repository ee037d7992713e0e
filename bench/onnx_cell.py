"""ONNX export of one ``RecurrentVSRNet`` cell with a constant zero state, for the vs-mlrt comparison.

vs-mlrt (``core.ort.Model``) runs stateless networks only: it concatenates the planes of its input clips into
channels. The exported graph therefore takes LR[t-1], LR[t], LR[t+1] as one (1, 9, h, w) tensor, feeds a zero
64-channel state (and zero previous SR for the feedback variant) and returns the clamped x4 SR frame
(1, 3, 4h, 4w). It does exactly the compute of one recurrent step, so its speed compares like for like.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from vqdsr_core.models.vsr import MODULUS, SCALE


class ZeroStateCell(nn.Module):
    """``RecurrentVSRNet.cell`` on a 9-channel window with a zero state; returns only the SR frame."""

    def __init__(self, vsr: nn.Module) -> None:
        super().__init__()
        if not hasattr(vsr, "cell") or not hasattr(vsr, "num_feat"):
            raise ValueError(f"ZeroStateCell: expected a RecurrentVSRNet, got {type(vsr).__name__}")
        self.vsr = vsr

    def forward(self, x: Tensor) -> Tensor:
        prev, cur, nxt = x[:, 0:3], x[:, 3:6], x[:, 6:9]  # (1, 3, h, w) each
        zero = torch.zeros_like(cur[:, :1])  # (1, 1, h, w): traced as an op, so the state is not a stored constant
        state = zero.expand(-1, self.vsr.num_feat, -1, -1)  # (1, 64, h, w)
        prev_sr = None
        if self.vsr.feedback:
            prev_sr = nn.functional.interpolate(zero, scale_factor=SCALE).expand(-1, 3, -1, -1)  # (1, 3, 4h, 4w)
        sr, _ = self.vsr.cell(prev, cur, nxt, state, prev_sr)
        return sr.clamp(0.0, 1.0)


def export_cell_onnx(vsr: nn.Module, path: str | Path, height: int = 180, width: int = 320, opset: int = 17) -> Path:
    """Write ``ZeroStateCell(vsr)`` as a static-shape fp32 ONNX file for (1, 9, height, width) input; atomic.

    Input name ``lr`` (LR[t-1], LR[t], LR[t+1] stacked on channels), output name ``sr``.
    """
    if height % MODULUS or width % MODULUS or height <= 0 or width <= 0:
        raise ValueError(
            f"export_cell_onnx: height and width must be positive multiples of {MODULUS}, got {height}x{width}"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = ZeroStateCell(vsr).float().eval()
    example = torch.rand(1, 9, height, width)
    fd, tmp = tempfile.mkstemp(suffix=".onnx", prefix=f".{path.stem}.", dir=path.parent)
    os.close(fd)
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter needs no onnxscript
            torch.onnx.export(
                module,
                (example,),
                tmp,
                input_names=["lr"],
                output_names=["sr"],
                opset_version=opset,
                dynamo=False,
                do_constant_folding=True,
            )
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def run_ort_cpu(onnx_path: str | Path, lr: Tensor, num_streams: int = 1, clock=None) -> list[float]:
    """Run the exported cell with vs-mlrt's ONNX Runtime CPU plugin (``core.ort.Model``) over LR frames.

    ``lr``: (n, 3, h, w) float32 in [0, 1]; the three clips are LR shifted by -1, 0, +1 (edges replicated), as
    vs-mlrt users feed temporal models. Frames are requested in order; returns per-frame seconds.
    """
    import time

    import vapoursynth as vs

    core = vs.core
    if not hasattr(core, "ort"):
        raise RuntimeError("run_ort_cpu: the vs-mlrt ORT plugin is missing (pip install vapoursynth-mlrt-ort)")
    if lr.ndim != 4 or lr.shape[1] != 3:
        raise ValueError(f"run_ort_cpu: expected (n, 3, h, w) frames, got {tuple(lr.shape)}")
    length = lr.shape[0]
    from vsvqdsr.frames import clip_from_array

    src = clip_from_array(lr.float().numpy(), vs.RGBS)
    prev, nxt = (src[0] + src[:-1], src[1:] + src[-1]) if length > 1 else (src, src)
    out = core.ort.Model([prev, src, nxt], network_path=str(onnx_path), provider="CPU", num_streams=num_streams)
    clock = clock or time.perf_counter
    times = []
    for k in range(length):
        t0 = clock()
        out.get_frame(k)
        times.append(clock() - t0)
    return times
