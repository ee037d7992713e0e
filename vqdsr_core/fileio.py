"""Temp files for atomic writes: created beside their target (same filesystem, so ``os.replace`` is atomic) with
the permissions a plain ``open()`` would give. ``tempfile.mkstemp`` makes 0600 files, which would leave every
weight file, frame and video this project writes unreadable to other users and to a web server."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def current_umask() -> int:
    """The process umask, read without changing it where /proc allows (``os.umask`` get-and-set is not
    thread-safe: vspipe runs filters on several threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temp_beside(path: str | Path, suffix: str = ".tmp") -> Path:
    """Create an empty hidden temp file next to ``path`` (folders made as needed), mode 0666 & ~umask.

    ``suffix`` matters where a writer picks the format from the extension (PyAV, torch-tensorrt)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
    finally:
        os.close(fd)
    return Path(tmp)
