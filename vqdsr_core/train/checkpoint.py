"""Training checkpoints: one ``torch.save`` dict, written atomically, with the previous one kept.

Layout of a run folder: ``latest.pt`` (newest), ``previous.pt`` (the one before), ``best.pt`` (best validation
score), ``config.json``, ``tb/`` (TensorBoard). A save writes a temp file, fsyncs it, moves ``latest.pt`` to
``previous.pt`` and renames the temp file to ``latest.pt``: at every instant at least one complete checkpoint
exists, so a crash mid-write never destroys the last good state.
"""

from __future__ import annotations

import io
import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..weights import atomic_write_bytes

log = logging.getLogger(__name__)

FORMAT = "vqdsr-train-checkpoint"
VERSION = 1
LATEST, PREVIOUS, BEST = "latest.pt", "previous.pt", "best.pt"


class CheckpointError(ValueError):
    """A training checkpoint is missing, unreadable or not a vqdsr training checkpoint."""


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch (CPU and CUDA) RNG states of this process."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _serialise(payload: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


def save_checkpoint(run_dir: str | Path, payload: dict[str, Any], *, best: bool = False) -> Path:
    """Write ``payload`` as the run's ``latest.pt`` (the old one becomes ``previous.pt``); or as ``best.pt``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    data = _serialise({"format": FORMAT, "version": VERSION, **payload})
    if best:
        atomic_write_bytes(run_dir / BEST, data)
        return run_dir / BEST
    tmp = run_dir / f".{LATEST}.incoming"
    atomic_write_bytes(tmp, data)  # complete and fsynced before anything is renamed
    latest = run_dir / LATEST
    if latest.exists():
        os.replace(latest, run_dir / PREVIOUS)
    os.replace(tmp, latest)
    return latest


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a training checkpoint on CPU; a clear error unless it is one."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # truncated zip, pickle errors, ...
        raise CheckpointError(f"checkpoint {str(path)!r} is unreadable or truncated: {e}") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a vqdsr training checkpoint")
    if ckpt.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {str(path)!r} has version {ckpt.get('version')!r}; expected {VERSION}")
    return ckpt


def find_resume(run_dir: str | Path) -> dict[str, Any] | None:
    """The newest readable checkpoint of a run (``latest.pt``, else ``previous.pt``), or None if there is none."""
    run_dir = Path(run_dir)
    errors = []
    for name in (LATEST, PREVIOUS):
        if (run_dir / name).exists():
            try:
                ckpt = read_checkpoint(run_dir / name)
            except CheckpointError as e:
                errors.append(str(e))
                log.warning("skipping %s", e)
                continue
            ckpt["_path"] = str(run_dir / name)
            return ckpt
    if errors:
        raise CheckpointError(f"no readable checkpoint in {str(run_dir)!r}: {'; '.join(errors)}")
    return None


def model_weights(ckpt: dict[str, Any], *, ema: bool = True, name: str = "g") -> dict[str, torch.Tensor]:
    """The state dict of model ``name`` in a checkpoint: its EMA copy when asked for and present."""
    if ema and ckpt.get("ema", {}).get(name) is not None:
        return ckpt["ema"][name]
    if name not in ckpt.get("models", {}):
        raise CheckpointError(f"checkpoint has no model {name!r} (has {sorted(ckpt.get('models', {}))})")
    return ckpt["models"][name]
