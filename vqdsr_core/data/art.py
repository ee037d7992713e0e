"""Clip-art for the animation renderer: SVG listing, the fixed held-out split, and a render cache.

Held-out rule: an SVG is "heldout" when ``int(sha256(file_name)[:8], 16) % 100 < HELDOUT_PERCENT`` (10), else
"train". Only the file *name* counts, not its folder, so openclipart's copies of one drawing in two categories
always land in the same split. The rule depends on nothing else (no seed, no list order), so it is the same on
every machine and for every art folder.

Each SVG (or one element of it, by id) is rendered at most once per size bucket (long side 64, 128, ..., 4096 px)
with ``rsvg-convert`` (or ``cairosvg``, whole files only) and cached as an RGBA PNG; files that fail to render are
remembered and skipped.

Validation-only art (KDE's ktuberling themes, see ``ktuberling.py``) is refused by ``list_art``, so no training
pool can draw from it: a folder at or around ``VALIDATION_ONLY_ROOTS`` or holding a ktuberling ``.theme`` file.
"""

from __future__ import annotations

import hashlib
import io
import logging
import shutil
import subprocess
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_ART_ROOT = Path("/usr/share/openclipart")
HELDOUT_PERCENT = 10
SPLITS = ("train", "heldout")
BUCKETS = (64, 128, 256, 512, 1024, 2048, 4096)
RENDER_TIMEOUT_S = 30
VALIDATION_ONLY_ROOTS = (Path("/usr/share/ktuberling"),)


def _validation_only(root: Path) -> str | None:
    """Why ``root`` must not feed a training pool, or ``None``."""
    r = root.resolve()
    for v in VALIDATION_ONLY_ROOTS:
        if r == v or v in r.parents or r in v.parents:
            return f"it is or holds {str(v)!r}"
    return None


def _is_theme_file(p: Path) -> bool:
    """A ktuberling playground description (``*.theme``: ``<playground gameboard=...>``)."""
    try:
        return p.suffix.lower() == ".theme" and p.is_file() and b"<playground" in p.read_bytes()[:4096]
    except OSError:
        return False


def art_split(path: str | Path) -> str:
    """``"heldout"`` or ``"train"`` for an SVG, from a hash of its file name (see the module docstring)."""
    h = int(hashlib.sha256(Path(path).name.encode("utf-8")).hexdigest()[:8], 16)
    return "heldout" if h % 100 < HELDOUT_PERCENT else "train"


def list_art(root: str | Path = DEFAULT_ART_ROOT, split: str | None = None) -> tuple[list[Path], int]:
    """Regular ``.svg`` files under ``root`` (symlinks skipped), sorted, optionally one split only.

    Returns ``(files, n_symlinks_skipped)``. Raises ValueError for validation-only art (module docstring).
    """
    if split is not None and split not in SPLITS:
        raise ValueError(f"list_art: split must be one of {SPLITS}, got {split!r}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"list_art: art folder {str(root)!r} does not exist (Debian: apt-get install --no-install-recommends "
            "openclipart-svg, or pass another folder of SVG files)"
        )
    refusal = _validation_only(root)
    files, links = [], 0
    for p in [] if refusal else root.rglob("*"):
        if _is_theme_file(p):
            refusal = f"it holds the ktuberling theme {str(p)!r}"
            break
        if p.suffix.lower() != ".svg":
            continue
        if p.is_symlink():
            links += 1
        elif p.is_file() and (split is None or art_split(p) == split):
            files.append(p)
    if refusal:
        raise ValueError(f"list_art: {str(root)!r} is validation-only art ({refusal}); it never feeds training")
    return sorted(files, key=lambda p: p.relative_to(root).as_posix()), links


def bucket_for(size: int) -> int:
    """The smallest cache bucket >= ``size`` (capped at the largest)."""
    for b in BUCKETS:
        if b >= size:
            return b
    return BUCKETS[-1]


def _render_rsvg(svg: Path, box: int, element: str | None = None) -> bytes:
    exe = shutil.which("rsvg-convert")
    assert exe is not None
    only = ["--export-id", element] if element else []
    res = subprocess.run(
        [exe, "-w", str(box), "-h", str(box), "-a", *only, "-f", "png", str(svg)],
        capture_output=True,
        timeout=RENDER_TIMEOUT_S,
        check=False,
    )
    if res.returncode != 0 or not res.stdout:
        raise RuntimeError(res.stderr.decode(errors="replace").strip()[:200] or f"exit code {res.returncode}")
    return res.stdout


def _render_cairosvg(svg: Path, box: int) -> bytes:
    import cairosvg
    from PIL import Image

    probe = Image.open(io.BytesIO(cairosvg.svg2png(url=str(svg))))
    w, h = probe.size
    scale = box / max(w, h)
    return cairosvg.svg2png(url=str(svg), output_width=max(1, round(w * scale)), output_height=max(1, round(h * scale)))


class ArtCache:
    """Renders SVGs to RGBA arrays (long side = a bucket size) and caches them on disk.

    Args:
        cache_dir: cache folder; default ``weights.cache_dir()/art``.
        renderer: ``"rsvg"``, ``"cairosvg"`` or ``"auto"`` (rsvg-convert when installed).
    """

    def __init__(self, cache_dir: str | Path | None = None, renderer: str = "auto") -> None:
        if renderer not in ("auto", "rsvg", "cairosvg"):
            raise ValueError(f"ArtCache: renderer must be 'auto', 'rsvg' or 'cairosvg', got {renderer!r}")
        if renderer == "auto":
            renderer = "rsvg" if shutil.which("rsvg-convert") else "cairosvg"
        if renderer == "rsvg" and not shutil.which("rsvg-convert"):
            raise FileNotFoundError("ArtCache: rsvg-convert not found (Debian: apt-get install librsvg2-bin)")
        self.renderer = renderer
        if cache_dir is None:
            from ..weights import cache_dir as user_cache

            cache_dir = user_cache() / "art"
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.rendered = self.hits = 0
        self.failed: set[Path | tuple[Path, str]] = set()  # files, or (file, element id)

    def _key(self, svg: Path, element: str | None = None) -> str:
        st = svg.stat()
        text = f"{svg.resolve()}|{st.st_size}|{st.st_mtime_ns}|{self.renderer}" + (f"#{element}" if element else "")
        return hashlib.sha1(text.encode()).hexdigest()

    def get(self, svg: str | Path, size: int, element: str | None = None) -> np.ndarray | None:
        """RGBA uint8 (h, w, 4) of ``svg`` with long side ``bucket_for(size)``; ``None`` if it does not render.

        ``element``: render only the SVG element with this id (``rsvg-convert --export-id``; rsvg only).
        """
        from PIL import Image

        from .clips import save_png_atomic

        if element is not None and self.renderer != "rsvg":
            raise ValueError(f"ArtCache.get: rendering one element ({element!r}) needs rsvg-convert, not cairosvg")
        svg = Path(svg)
        failed_key = (svg, element) if element else svg
        if failed_key in self.failed:
            return None
        key, box = self._key(svg, element), bucket_for(size)
        bad, png = self.cache_dir / f"{key}.bad", self.cache_dir / f"{key}_{box}.png"
        if bad.exists():
            self.failed.add(failed_key)
            return None
        if png.is_file():
            try:
                with Image.open(png) as im:
                    self.hits += 1
                    return np.asarray(im.convert("RGBA"))
            except OSError:
                png.unlink(missing_ok=True)
        try:
            data = _render_rsvg(svg, box, element) if self.renderer == "rsvg" else _render_cairosvg(svg, box)
            with Image.open(io.BytesIO(data)) as im:
                rgba = np.asarray(im.convert("RGBA"))
            if rgba[..., 3].max() == 0 or min(rgba.shape[:2]) < 2:
                raise RuntimeError("renders empty")
        except Exception as e:  # any renderer failure (timeouts, parser errors, cairo errors) skips the file
            log.debug("ArtCache: %s%s does not render: %s", svg, f"#{element}" if element else "", e)
            self.failed.add(failed_key)
            bad.touch()
            return None
        save_png_atomic(rgba, png, compress_level=1)
        self.rendered += 1
        return rgba


class ArtPool:
    """The SVGs of one split, drawn at random; SVGs that fail to render are skipped (and counted).

    A draw picks a folder with probability proportional to the square root of its file count, then a file in it,
    so huge folders of near-duplicates (openclipart's 1,378 line-art stars, 500+ flat icons) do not dominate.
    """

    def __init__(self, root: str | Path, split: str, cache: ArtCache) -> None:
        self.files, self.symlinks = list_art(root, split)
        if not self.files:
            raise ValueError(f"ArtPool: no renderable-looking .svg files of split {split!r} under {str(root)!r}")
        self.root, self.split, self.cache = Path(root), split, cache
        folders: dict[Path, list[Path]] = {}
        for f in self.files:
            folders.setdefault(f.parent, []).append(f)
        self.folders = [folders[k] for k in sorted(folders)]
        weights = np.sqrt([len(v) for v in self.folders])
        self.folder_p = weights / weights.sum()

    def draw(self, rng: np.random.Generator, size: int, tries: int = 20) -> tuple[Path, np.ndarray]:
        """A random SVG of the pool rendered with long side ``bucket_for(size)``: ``(path, rgba)``."""
        for _ in range(tries):
            folder = self.folders[int(rng.choice(len(self.folders), p=self.folder_p))]
            path = folder[int(rng.integers(len(folder)))]
            rgba = self.cache.get(path, size)
            if rgba is not None:
                return path, rgba
        raise RuntimeError(f"ArtPool: {tries} SVGs in a row failed to render under {str(self.root)!r}")

    def name(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()
