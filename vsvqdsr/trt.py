"""Optional TensorRT compilation of the recurrent cell (NVIDIA only; needs ``pip install vsvqdsr[trt]``).

Engines are cached in ``weights.cache_dir()/trt``. The file name is a hash of everything that makes an engine
valid: weights sha256, variant (feedback or not), input shape, precision, GPU name and TensorRT / torch-tensorrt
versions. Builds go to a temp file and are renamed into place; a cached engine that fails to load is rebuilt.
During builds stdout is redirected to stderr at the file-descriptor level (vspipe sends video through stdout).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)


def engine_key(
    *,
    weights_sha256: str,
    feedback: bool,
    shape: tuple[int, int],
    precision: str,
    gpu_name: str,
    trt_version: str,
) -> str:
    """Hex digest identifying one engine; any change of an input gives a different key."""
    fields = {
        "weights": weights_sha256,
        "feedback": bool(feedback),
        "shape": [int(s) for s in shape],
        "precision": precision,
        "gpu": gpu_name,
        "trt": trt_version,
        "format": 1,
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def engine_path(key: str, folder: Path | None = None) -> Path:
    """Where the engine for ``key`` lives: ``cache_dir()/trt/cell_<key[:32]>.ts`` unless ``folder`` is given."""
    if folder is None:
        from vqdsr_core.weights import cache_dir

        folder = cache_dir() / "trt"
    return Path(folder) / f"cell_{key[:32]}.ts"


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send everything written to fd 1 (Python and native code) to fd 2 for the duration of the block."""
    with contextlib.suppress(AttributeError, ValueError):
        if sys.stdout is not None:
            sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        with contextlib.suppress(AttributeError, ValueError):
            if sys.stdout is not None:
                sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def load_or_build[T](path: Path, build: Callable[[Path], None], load: Callable[[Path], T]) -> T:
    """Load the engine at ``path``; if missing or unloadable, ``build(tmp)`` it atomically and load that."""
    if path.is_file():
        try:
            return load(path)
        except Exception as e:  # stale engine (TensorRT/driver update, truncated file): rebuild
            log.warning("cached TensorRT engine %s failed to load (%s); rebuilding", path, e)
            path.unlink(missing_ok=True)
    from vqdsr_core.fileio import temp_beside

    tmp = temp_beside(path, ".tmp.ts")
    try:
        log.warning("building a TensorRT engine for the VSR cell (first use; this may take a few minutes)")
        with stdout_to_stderr():
            build(tmp)
        if tmp.stat().st_size < 512:
            raise RuntimeError(f"TensorRT build wrote an implausibly small engine ({tmp.stat().st_size} bytes)")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return load(path)


def require_trt(func: str):
    """Import torch_tensorrt or raise a clear error; also require CUDA."""
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError(f"{func}: trt=True needs an NVIDIA GPU with CUDA; none is available")
    try:
        import torch_tensorrt
    except ImportError as e:
        raise RuntimeError(
            f"{func}: trt=True needs torch-tensorrt (pip install 'vsvqdsr[trt]' from the PyTorch CUDA index): {e}"
        ) from e
    return torch_tensorrt


def compile_cell(upscaler, shape: tuple[int, int], *, func: str, folder: Path | None = None) -> Callable:
    """Replace ``upscaler.cell_fn`` with a TensorRT engine for LR windows of ``shape`` (h, w); returns it."""
    import torch

    torch_tensorrt = require_trt(func)
    precision = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}[upscaler.dtype]
    try:
        import tensorrt

        trt_version = tensorrt.__version__
    except ImportError:
        trt_version = "unknown"
    key = engine_key(
        weights_sha256=getattr(upscaler, "weights_sha256", "unknown"),
        feedback=upscaler.feedback,
        shape=shape,
        precision=precision,
        gpu_name=torch.cuda.get_device_name(upscaler.device),
        trt_version=f"{trt_version}/{torch_tensorrt.__version__}",
    )
    path = engine_path(key, folder)
    h, w = shape
    model = upscaler.model
    dev, dt, mf = upscaler.device, upscaler.dtype, upscaler.memory_format

    def zeros(c: int, s: int = 1) -> torch.Tensor:
        return torch.zeros(1, c, h * s, w * s, device=dev, dtype=dt).contiguous(memory_format=mf)

    inputs = [zeros(3), zeros(3), zeros(3), zeros(model.num_feat)]
    if upscaler.feedback:
        inputs.append(zeros(3, 4))

    class Cell(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = model

        def forward(self, *xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.net.cell(*xs)

    def build(tmp: Path) -> None:
        os.environ.setdefault("CI_BUILD", "1")  # no progress bars from torch-tensorrt
        with torch.inference_mode(False), torch.no_grad():
            gm = torch_tensorrt.compile(
                Cell().eval(), ir="dynamo", inputs=inputs, enabled_precisions={dt}, min_block_size=1
            )
            torch_tensorrt.save(gm, str(tmp), output_format="torchscript", inputs=inputs)

    def load(p: Path) -> Callable:
        return torch.jit.load(str(p), map_location=dev).eval()

    engine = load_or_build(path, build, load)

    def cell_fn(prev, cur, nxt, state, prev_sr=None):
        args = (prev, cur, nxt, state) if prev_sr is None else (prev, cur, nxt, state, prev_sr)
        out = engine(*(a.contiguous(memory_format=mf) for a in args))
        return out[0], out[1]

    upscaler.cell_fn = cell_fn
    return cell_fn
