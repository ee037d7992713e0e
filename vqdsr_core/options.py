"""Option values shared by the VapourSynth filters and the ``vqdsr upscale`` / ``vqdsr degrade`` commands.

One definition for both faces, importing neither torch nor numpy (``import vsvqdsr`` and ``vqdsr --help`` stay
light): YUV matrices by H.273 code or name, the k-th-nearest-code draws of ``degrade`` (defaults, checks, the
per-(seed, frame) draw) and the output size of ``upscale``. Errors are ``ValueError``s starting with the caller's
name.
"""

from __future__ import annotations

import math
from fractions import Fraction

# H.273 matrix coefficients accepted by name in ``matrix=`` / ``--matrix`` (the resize plugin's spellings)
MATRICES = {
    "709": 1,
    "fcc": 4,
    "470bg": 5,
    "601": 6,
    "170m": 6,
    "240m": 7,
    "ycgco": 8,
    "2020ncl": 9,
    "2020cl": 10,
    "chromancl": 12,
    "chromacl": 13,
    "ictcp": 14,
}
MATRIX_RGB, MATRIX_UNSPECIFIED = 0, 2


def parse_matrix(matrix: int | str | None, func: str) -> int | None:
    """``matrix`` (an H.273 code or a name of ``MATRICES``) as an H.273 code; None stays None."""
    if matrix is None:
        return None
    if isinstance(matrix, str):
        if matrix.lower() in MATRICES:
            return MATRICES[matrix.lower()]
        raise ValueError(f"{func}: unknown matrix {matrix!r}; use an H.273 code or one of {sorted(MATRICES)}")
    if isinstance(matrix, int) and not isinstance(matrix, bool) and matrix in set(MATRICES.values()):
        return matrix
    raise ValueError(
        f"{func}: matrix must be an H.273 YUV matrix code {sorted(set(MATRICES.values()))} or name, got {matrix!r}"
    )


# ---------------------------------------------------------------------------------------------- degrade
KRange = int | tuple[int, int] | list[int]
K_TOP: KRange = 1
K_MID: KRange = (1, 10)  # VQD-SR: mid <= 10
K_BOTTOM: KRange = (1, 50)  # VQD-SR: bottom <= 50
SEED = 0
PER = "clip"
PERS = ("clip", "frame")
KEEP_COLOUR = 0.0  # px; 0 = the raw reconstruction (paper), right for the bundled, colour-locked degrader


def check_k(name: str, k: object, func: str) -> tuple[int, int]:
    """An int k >= 1 or an inclusive (lo, hi) range as (lo, hi)."""

    def ok(v: object) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 1

    if ok(k):
        return k, k  # type: ignore[return-value]
    if isinstance(k, list | tuple) and len(k) == 2 and ok(k[0]) and ok(k[1]) and k[0] <= k[1]:
        return int(k[0]), int(k[1])
    raise ValueError(f"{func}: {name} must be an int >= 1 or a (lo, hi) range with 1 <= lo <= hi, got {k!r}")


def check_seed_per(seed: object, per: object, func: str) -> None:
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"{func}: seed must be an int >= 0, got {seed!r}")
    if per not in PERS:
        raise ValueError(f"{func}: per must be 'clip' or 'frame', got {per!r}")


def fit_k_ranges(
    ranges: tuple[tuple[int, int], ...], n_embed: int, multiscale: bool, func: str
) -> tuple[tuple[int, int], ...]:
    """Check the ranges against the model's codebook; a top-only model has no mid/bottom branch (k = 1 there)."""
    if max(hi for _, hi in ranges) > n_embed:
        raise ValueError(f"{func}: k must be <= the codebook size {n_embed}, got ranges {ranges}")
    return ranges if multiscale else (ranges[0], (1, 1), (1, 1))


def draw_k(ranges: tuple[tuple[int, int], ...], seed: int, frame: int | None) -> tuple[int, ...]:
    """k per branch, uniform in each inclusive range, from a generator seeded by (seed, frame) or (seed,)."""
    import numpy as np  # here: the commands import this module at registration (``vqdsr --help``)

    rng = np.random.default_rng([seed] if frame is None else [seed, 1, frame])
    return tuple(int(rng.integers(lo, hi, endpoint=True)) for lo, hi in ranges)


# ---------------------------------------------------------------------------------------------- upscale
NET_SCALE = 4


def output_size(
    w: int,
    h: int,
    *,
    scale: float = NET_SCALE,
    width: int | None = None,
    height: int | None = None,
    mod: tuple[int, int] = (1, 1),
    func: str,
) -> tuple[int, int]:
    """Output (width, height) of ``upscale`` for a ``w`` x ``h`` input: ``scale`` x (default 4, the net's own), or
    ``width``/``height`` (one of them: the other keeps the aspect ratio). At most 4x: the net runs at x4 and the
    result is downscaled. Derived sizes are rounded to multiples of ``mod`` (the format's chroma subsampling);
    given ones must be multiples already."""
    if width is not None or height is not None:
        if scale != NET_SCALE:
            raise ValueError(f"{func}: give scale or width/height, not both")
        for name, v, m in (("width", width, mod[0]), ("height", height, mod[1])):
            if v is None:
                continue
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{func}: {name} must be an int >= 1, got {v!r}")
            if v % m:
                raise ValueError(f"{func}: {name} must be a multiple of {m} for this format's subsampling, got {v}")
        out_w = width if width is not None else _round_mod(w * height / h, mod[0])
        out_h = height if height is not None else _round_mod(h * width / w, mod[1])
    else:
        if isinstance(scale, bool) or not isinstance(scale, int | float) or not 0 < scale <= NET_SCALE:
            raise ValueError(f"{func}: scale must be a number in (0, {NET_SCALE}], got {scale!r}")
        out_w, out_h = _round_mod(w * scale, mod[0]), _round_mod(h * scale, mod[1])
    if out_w > NET_SCALE * w or out_h > NET_SCALE * h:
        raise ValueError(
            f"{func}: output size {out_w}x{out_h} is above {NET_SCALE} x the input's {w}x{h}; the net is x4"
        )
    return out_w, out_h


def _round_mod(x: float, m: int) -> int:
    return max(m, m * math.floor(x / m + 0.5))


def scaled_sar(sar: Fraction, in_size: tuple[int, int], out_size: tuple[int, int]) -> Fraction:
    """Sample aspect ratio that keeps the display aspect when ``in_size`` (w, h) is stretched to ``out_size``."""
    return sar * Fraction(in_size[0] * out_size[1], in_size[1] * out_size[0])
