"""Export a training checkpoint as a plugin weight file (``weights.save_weights``) or the VSR cell as ONNX."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor, nn

from ..models import build_model
from ..weights import save_weights
from .checkpoint import model_weights, read_checkpoint

log = logging.getLogger("vqdsr.train")


def _net_from_checkpoint(ckpt_path: str | Path, ema: bool) -> tuple[dict[str, Tensor], dict, dict]:
    ckpt = read_checkpoint(ckpt_path)
    info = ckpt.get("export")
    if not info:
        raise ValueError(f"export: checkpoint {str(ckpt_path)!r} names no exportable network")
    state = model_weights(ckpt, ema=ema, name=info["net"])
    return state, info, ckpt


def export_checkpoint(
    ckpt_path: str | Path, out: str | Path, *, ema: bool = True, dtype: torch.dtype | None = None
) -> Path:
    """Write the trained network (its EMA copy unless ``ema=False``) of a checkpoint as a verified weight file."""
    state, info, ckpt = _net_from_checkpoint(ckpt_path, ema)
    used_ema = ema and bool(ckpt.get("ema", {}).get(info["net"]))
    extra = {
        "source": "vqdsr train",
        "kind": str(ckpt.get("kind")),
        "stage": str(ckpt.get("stage")),
        "step": str(ckpt.get("step")),
        "ema": "yes" if used_ema else "no",
        "card": f"{ckpt.get('kind')} {ckpt.get('stage')} stage, step {ckpt.get('step')}"
        f"{', EMA weights' if used_ema else ''}",
    }
    return save_weights(out, state, arch=info["arch"], config=info["config"], extra=extra, dtype=dtype)


class VSRCell(nn.Module):
    """One recurrent step as a stateless graph: (lr_prev, lr, lr_next, state[, prev_sr]) -> (sr, state)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, lr_prev: Tensor, lr: Tensor, lr_next: Tensor, state: Tensor, *prev_sr: Tensor):
        return self.net.cell(lr_prev, lr, lr_next, state, prev_sr[0] if prev_sr else None)


def export_onnx(source: str | Path, out: str | Path, *, ema: bool = True, fp16: bool = False, opset: int = 17) -> Path:
    """Export the VSR cell of a checkpoint (.pt) or weight file (.safetensors) to ONNX, state as input and output.

    Inputs ``lr_prev, lr, lr_next`` (B, 3, h, w) in [0, 1] with h, w multiples of 4, ``state`` (B, 64, h, w)
    [, ``prev_sr`` (B, 3, 4h, 4w) for the AnimeSR feedback variant]; outputs ``sr``, ``state_out``. Batch,
    height and width are dynamic.
    """
    import io
    import warnings

    from ..weights import atomic_write_bytes, load_model

    if str(source).endswith(".pt"):
        state, info, _ = _net_from_checkpoint(source, ema)
        net = build_model(info["arch"], info["config"])
        net.load_state_dict(state)
    else:
        net, _ = load_model(source, arch=("vqdsr_vsr", "animesr_vsr"))
    if not hasattr(net, "cell"):
        raise ValueError(f"export --onnx: {str(source)!r} holds no VSR network (only the VSR cell exports to ONNX)")
    net = net.eval().to(torch.float16 if fp16 else torch.float32)
    dt = next(net.parameters()).dtype
    x = torch.rand(1, 3, 16, 16, dtype=dt)
    args = [x, x, x, torch.zeros(1, net.num_feat, 16, 16, dtype=dt)]
    names = ["lr_prev", "lr", "lr_next", "state"]
    if net.feedback:
        args.append(torch.zeros(1, 3, 64, 64, dtype=dt))
        names.append("prev_sr")
    axes = {n: {0: "batch", 2: "height", 3: "width"} for n in [*names, "sr", "state_out"]}
    buf = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated but needs no onnxscript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            VSRCell(net), tuple(args), buf, dynamo=False, input_names=names, output_names=["sr", "state_out"],
            dynamic_axes=axes, opset_version=opset,
        )  # fmt: skip
    out = Path(out)
    atomic_write_bytes(out, buf.getvalue())
    return out
