"""Weight files: safetensors plus metadata, strict loading, the bundled models and the user cache folder.

Metadata (all strings): ``format`` = "vsvqdsr-weights", ``format_version``, ``arch`` (a name in
``models.ARCHITECTURES``), ``config`` (JSON constructor arguments), ``sha256`` (over names, dtypes, shapes and bytes
of every tensor) and free-form extras (``card`` etc.). Loading never leaves a parameter uninitialised: any
missing, unexpected or mis-shaped tensor is an error naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from .fileio import temp_beside
from .models import build_model

FORMAT = "vsvqdsr-weights"
FORMAT_VERSION = "1"
BUNDLED_DIR = Path(__file__).parent / "weights_bundled"
# the default model of each role, shipped as package data
BUNDLED = {"vsr": "vqdsr_vsr_default", "vqgan": "vqgan_degrade_default"}


class WeightsError(ValueError):
    """A weight file is missing, corrupted or does not fit the expected architecture."""


@dataclass
class WeightsInfo:
    path: Path
    arch: str
    config: dict
    sha256: str
    extra: dict[str, str] = field(default_factory=dict)


def cache_dir() -> Path:
    """User cache folder (``$VSVQDSR_CACHE`` or the platform's user cache dir); created on demand."""
    env = os.environ.get("VSVQDSR_CACHE")
    if env:
        path = Path(env)
    else:
        import platformdirs

        path = Path(platformdirs.user_cache_dir("vsvqdsr"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def tensors_sha256(state: dict[str, Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and a rename."""
    tmp = temp_beside(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_weights(
    path: str | Path,
    model: nn.Module | dict[str, Tensor],
    *,
    arch: str,
    config: dict,
    extra: dict[str, str] | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Save a model (or state dict) as a verified safetensors weight file, atomically."""
    from safetensors.torch import save

    path = Path(path)
    state = model.state_dict() if isinstance(model, nn.Module) else model
    state = {
        k: (v.to(dtype) if dtype and v.is_floating_point() else v).detach().cpu().contiguous() for k, v in state.items()
    }
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": arch,
        "config": json.dumps(config, sort_keys=True),
        "sha256": tensors_sha256(state),
    }
    for k, v in (extra or {}).items():
        if k in meta:
            raise ValueError(f"save_weights: extra key {k!r} is reserved")
        meta[k] = str(v)
    atomic_write_bytes(path, save(state, metadata=meta))
    return path


def read_weights(path: str | Path) -> tuple[dict[str, Tensor], WeightsInfo]:
    """Read and verify a weight file: format, metadata and tensor hash."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = _existing_file(Path(path))
    data = path.read_bytes()
    try:
        state = load(data)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise WeightsError(f"weight file {str(path)!r} is corrupted or truncated: {e}") from e
    meta = _header_metadata(data, path)
    if meta.get("format") != FORMAT:
        raise WeightsError(f"weight file {str(path)!r} is not a vsvqdsr weight file (no '{FORMAT}' metadata)")
    if meta.get("format_version") != FORMAT_VERSION:
        raise WeightsError(
            f"weight file {str(path)!r} has format version {meta.get('format_version')!r}; "
            f"this vsvqdsr reads version {FORMAT_VERSION}"
        )
    digest = tensors_sha256(state)
    if digest != meta.get("sha256"):
        raise WeightsError(f"weight file {str(path)!r} is corrupted: tensor checksum mismatch")
    try:
        config = json.loads(meta["config"])
    except (KeyError, json.JSONDecodeError) as e:
        raise WeightsError(f"weight file {str(path)!r} has no readable 'config' metadata") from e
    reserved = {"format", "format_version", "arch", "config", "sha256"}
    info = WeightsInfo(path, meta.get("arch", ""), config, digest, {k: v for k, v in meta.items() if k not in reserved})
    return state, info


def _header_metadata(data: bytes, path: Path) -> dict[str, str]:
    n = int.from_bytes(data[:8], "little")
    try:
        return json.loads(data[8 : 8 + n]).get("__metadata__", {}) or {}
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise WeightsError(f"weight file {str(path)!r} has an unreadable header") from e


def check_state_fits(model: nn.Module, state: dict[str, Tensor], path: Path) -> None:
    """Raise WeightsError naming the file unless ``state`` has exactly the model's tensors and shapes."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if state[k].shape != own[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
    if shapes:
        problems.append(f"{len(shapes)} with wrong shape (e.g. {'; '.join(shapes[:3])})")
    if problems:
        raise WeightsError(f"weight file {str(path)!r} does not fit {type(model).__name__}: " + "; ".join(problems))


def load_model(
    path: str | Path,
    *,
    arch: str | tuple[str, ...] | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[nn.Module, WeightsInfo]:
    """Build the file's architecture, load every tensor strictly, move to device/dtype, eval mode."""
    state, info = read_weights(path)
    allowed = (arch,) if isinstance(arch, str) else arch
    if allowed is not None and info.arch not in allowed:
        raise WeightsError(
            f"weight file {str(info.path)!r} holds a {info.arch!r} model; expected {' or '.join(allowed)}"
        )
    try:
        model = build_model(info.arch, info.config)
    except ValueError as e:
        raise WeightsError(f"weight file {str(info.path)!r}: {e}") from e
    check_state_fits(model, state, info.path)
    model.load_state_dict({k: v.to(model.state_dict()[k].dtype) for k, v in state.items()}, strict=True)
    return model.to(device=device, dtype=dtype).eval(), info


def bundled_weights(role: str) -> Path:
    """Path of the bundled default model for ``role`` ("vsr" or "vqgan"); a clear error if none ships yet."""
    if role not in BUNDLED:
        raise ValueError(f"bundled_weights: unknown role {role!r}; known: {sorted(BUNDLED)}")
    path = BUNDLED_DIR / f"{BUNDLED[role]}.safetensors"
    if not path.is_file():
        raise WeightsError(
            f"no bundled default {role} model is installed ({path.name} missing); pass weights=PATH to a weight "
            "file made by `vqdsr train-*` / `vqdsr export`, or see training/README.md to train one"
        )
    return path


def resolve_weights(weights: str | Path | None, role: str) -> Path:
    """``None`` -> the bundled default for ``role``; a path -> that path (checked to exist)."""
    if weights is None:
        return bundled_weights(role)
    return _existing_file(Path(weights).expanduser())


def _existing_file(path: Path) -> Path:
    if path.is_dir():
        raise WeightsError(f"weight file {str(path)!r} is a folder; give the .safetensors file in it")
    if not path.is_file():
        raise WeightsError(f"weight file {str(path)!r} does not exist")
    return path
