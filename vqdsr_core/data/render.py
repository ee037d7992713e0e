"""Synthetic HR animation clips from clip-art: scenes with a camera, moving characters and hard cuts.

A scene is a "world" canvas larger than the frame: a background (a gradient sky, a hilly ground and flat outlined
shapes, optionally with one big SVG drawn over it) plus 1-4 character SVGs with alpha. Characters glide along
eased straight paths with a small walking bob, optionally "on twos" (new pose every 2nd frame, like hand-drawn
animation); the camera pans and zooms smoothly over the world. A clip is 1 scene, or 2 with a hard cut between
them (probability ``cut_prob``). Everything is drawn from ``numpy.random.default_rng([seed, clip_index])`` and the
art of a clip comes only from its split (see ``art.py``), so a (seed, index, split, size) always gives the same
frames on the same art folder.

The world is drawn ``WORLD_SCALE`` times finer than the output, so the camera only ever downsamples (sharp HR).
"""

from __future__ import annotations

import colorsys
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .art import DEFAULT_ART_ROOT, SPLITS, ArtCache, ArtPool
from .clips import save_png_atomic

log = logging.getLogger(__name__)

WORLD_SCALE = 1.25  # world px per output px at zoom 1; zoom stays in [1, WORLD_SCALE]
FORMAT_VERSION = 1


@dataclass
class RenderConfig:
    """What a rendered clip looks like (everything except the seed)."""

    width: int = 1280
    height: int = 720
    frames: int = 30
    split: str = "train"
    cut_prob: float = 0.3
    max_characters: int = 4
    svg_background_prob: float = 0.4
    art_root: str = str(DEFAULT_ART_ROOT)

    def check(self) -> None:
        if self.width < 16 or self.height < 16:
            raise ValueError(f"RenderConfig: size must be at least 16x16, got {self.width}x{self.height}")
        if self.frames < 1:
            raise ValueError(f"RenderConfig: frames must be >= 1, got {self.frames}")
        if self.split not in SPLITS:
            raise ValueError(f"RenderConfig: split must be one of {SPLITS}, got {self.split!r}")
        if not 1 <= self.max_characters <= 8:
            raise ValueError(f"RenderConfig: max_characters must be in 1..8, got {self.max_characters}")


@dataclass
class Actor:
    art: str
    rgba: np.ndarray = field(repr=False)
    long_side: float  # world px at scale 1
    p0: tuple[float, float]
    p1: tuple[float, float]
    scale0: float
    scale1: float
    bob: float  # world px
    bob_period: float  # frames
    mirror: bool
    fitted: dict = field(default_factory=dict, repr=False)  # long side (px) -> resized sprite

    def sprite(self, scale: float):
        side = max(1, round(self.long_side * scale))
        if side not in self.fitted:
            self.fitted[side] = _fit(self.rgba, side, self.mirror)
        return self.fitted[side]


@dataclass
class Scene:
    start: int
    length: int
    background: object = field(repr=False)  # PIL RGBA image of the world
    background_art: str | None
    actors: list[Actor]
    cam0: tuple[float, float, float]  # centre x, centre y, zoom
    cam1: tuple[float, float, float]
    on_twos: bool


def _ease(s: float) -> float:
    """Half linear, half smoothstep: smooth starts/stops that never fully stop."""
    s = min(max(s, 0.0), 1.0)
    return 0.5 * s + 0.5 * s * s * (3 - 2 * s)


def _colour(rng: np.random.Generator, sat: tuple[float, float], val: tuple[float, float]) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*sat), rng.uniform(*val))
    return round(r * 255), round(g * 255), round(b * 255)


def _procedural_background(rng: np.random.Generator, ww: int, wh: int, line: int):
    """Gradient sky, wavy outlined ground and flat outlined shapes, drawn 2x and downsampled (anti-aliased)."""
    from PIL import Image, ImageDraw

    ss = 2
    W, H = ww * ss, wh * ss
    top, bottom = np.array(_colour(rng, (0.2, 0.7), (0.7, 1.0))), np.array(_colour(rng, (0.1, 0.5), (0.8, 1.0)))
    ramp = np.linspace(0, 1, H, dtype=np.float32)[:, None, None]
    sky = (top * (1 - ramp) + bottom * ramp).astype(np.uint8)
    img = Image.fromarray(np.broadcast_to(sky, (H, W, 3)).copy()).convert("RGBA")
    draw = ImageDraw.Draw(img)
    ink = _colour(rng, (0.2, 0.6), (0.05, 0.2))
    lw = line * ss
    for _ in range(int(rng.integers(2, 6))):  # far shapes: clouds, houses, trees, signs
        x, y = rng.uniform(0, W), rng.uniform(0, H * 0.7)
        rx, ry = rng.uniform(0.03, 0.15) * W, rng.uniform(0.04, 0.2) * H
        box = (x - rx, y - ry, x + rx, y + ry)
        fill = _colour(rng, (0.1, 0.8), (0.5, 1.0))
        kind = int(rng.integers(3))
        if kind == 0:
            draw.ellipse(box, fill=fill, outline=ink, width=lw)
        elif kind == 1:
            draw.rounded_rectangle(box, radius=min(rx, ry) * rng.uniform(0, 0.5), fill=fill, outline=ink, width=lw)
        else:
            draw.polygon(
                [(x - rx, y + ry), (x + rx, y + ry), (x + rng.uniform(-rx, rx), y - ry)],
                fill=fill,
                outline=ink,
                width=lw,
            )
    horizon = rng.uniform(0.5, 0.75) * H
    xs = np.linspace(0, W, 64)
    waves = sum(
        rng.uniform(0.01, 0.05) * H * np.sin(xs / W * rng.uniform(1, 6) * np.pi + rng.uniform(0, 6.3)) for _ in range(3)
    )
    ground = [(float(x), float(horizon + w)) for x, w in zip(xs, waves)] + [(W, H), (0, H)]
    draw.polygon(ground, fill=_colour(rng, (0.3, 0.8), (0.4, 0.9)), outline=ink, width=lw)
    for _ in range(int(rng.integers(1, 5))):  # near shapes: rocks, bushes on the ground
        x, y = rng.uniform(0, W), rng.uniform(horizon, H)
        r = rng.uniform(0.02, 0.08) * W
        draw.ellipse(
            (x - r, y - r * 0.6, x + r, y + r * 0.6), fill=_colour(rng, (0.3, 0.9), (0.3, 0.8)), outline=ink, width=lw
        )
    return img.resize((ww, wh), Image.Resampling.LANCZOS)


def _fit(rgba: np.ndarray, long_side: float, mirror: bool = False):
    from PIL import Image

    im = Image.fromarray(rgba)
    k = long_side / max(im.size)
    im = im.resize((max(1, round(im.width * k)), max(1, round(im.height * k))), Image.Resampling.LANCZOS)
    return im.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if mirror else im


def _paste(dst, src, cx: float, cy: float) -> None:
    """Alpha-composite ``src`` centred at (cx, cy) onto ``dst``, clipped to its bounds."""
    x0, y0 = round(cx - src.width / 2), round(cy - src.height / 2)
    sx, sy = max(0, -x0), max(0, -y0)
    ex, ey = min(src.width, dst.width - x0), min(src.height, dst.height - y0)
    if ex > sx and ey > sy:
        dst.alpha_composite(src, dest=(x0 + sx, y0 + sy), source=(sx, sy, ex, ey))


def _camera_frame(world, cam0: tuple, cam1: tuple, u: float, view: tuple, size: tuple[int, int]) -> np.ndarray:
    """The camera at ``u`` in [0, 1] between (cx, cy, zoom) ``cam0`` and ``cam1``: the world box it sees (``view``
    world px at zoom 1), Lanczos-resampled to ``size`` (W, H), as (H, W, 3) uint8."""
    from PIL import Image

    cx, cy, z = (a + (b - a) * u for a, b in zip(cam0, cam1))
    hw, hh = view[0] / z / 2, view[1] / z / 2
    frame = world.convert("RGB").resize(size, Image.Resampling.LANCZOS, box=(cx - hw, cy - hh, cx + hw, cy + hh))
    return np.asarray(frame)


class ClipRenderer:
    """Plans and draws clips for one ``RenderConfig``; SVG renders are cached by an ``ArtCache``."""

    def __init__(self, cfg: RenderConfig, cache: ArtCache | None = None) -> None:
        cfg.check()
        self.cfg = cfg
        self.cache = cache or ArtCache()
        self.pool = ArtPool(cfg.art_root, cfg.split, self.cache)
        self.view = (cfg.width * WORLD_SCALE, cfg.height * WORLD_SCALE)  # world px seen at zoom 1
        self.world = (round(self.view[0] * 1.4), round(self.view[1] * 1.25))
        self.line = max(1, round(cfg.height * WORLD_SCALE / 240))

    def _scene(self, rng: np.random.Generator, start: int, length: int) -> Scene:
        cfg, (vw, vh), (ww, wh) = self.cfg, self.view, self.world
        span = max(1, length - 1)
        bg = _procedural_background(rng, ww, wh, self.line)
        bg_art = None
        if rng.random() < cfg.svg_background_prob:
            path, rgba = self.pool.draw(rng, round(wh * 1.1))
            big = _fit(rgba, wh * rng.uniform(0.8, 1.1))
            _paste(bg, big, rng.uniform(0.3, 0.7) * ww, wh - big.height / 2 + rng.uniform(0, 0.1) * wh)
            bg_art = self.pool.name(path)
        actors = []
        for _ in range(int(rng.integers(1, cfg.max_characters + 1))):
            side = rng.uniform(0.25, 0.65) * vh
            s0, s1 = (1.0, 1.0) if rng.random() < 0.7 else tuple(rng.uniform(0.8, 1.2, 2))
            path, rgba = self.pool.draw(rng, round(side * max(s0, s1)))
            y = rng.uniform(0.45, 0.8) * wh
            x0 = rng.uniform(0.2, 0.8) * ww
            move = 0.0 if rng.random() < 0.25 else rng.choice([-1, 1]) * rng.uniform(0.005, 0.02) * vw * span
            dy = rng.uniform(-0.002, 0.002) * vh * span if move else 0.0
            bob = rng.uniform(0, 0.03) * vh if move else 0.0
            actors.append(
                Actor(
                    art=self.pool.name(path),
                    rgba=rgba,
                    long_side=side,
                    p0=(x0, y),
                    p1=(x0 + move, y + dy),
                    scale0=s0,
                    scale1=s1,
                    bob=bob,
                    bob_period=rng.uniform(6, 16),
                    mirror=bool(move < 0) ^ bool(rng.random() < 0.1),  # face the way they walk, mostly
                )
            )
        c0 = (rng.uniform(vw / 2, ww - vw / 2), rng.uniform(vh / 2, wh - vh / 2), rng.uniform(1.0, WORLD_SCALE))
        c1 = c0
        if not (rng.random() < 0.3 and any(a.p0 != a.p1 for a in actors)):  # a still camera needs a moving actor
            ang, speed = rng.uniform(0, 2 * np.pi), rng.uniform(0.003, 0.012) * vw
            d = (np.cos(ang) * speed * span, 0.5 * np.sin(ang) * speed * span)
            lo, hi = (vw / 2, vh / 2), (ww - vw / 2, wh - vh / 2)  # keeps the widest view (zoom 1) in the world
            pos = [
                float(np.clip(c - dd if not lo[k] <= c + dd <= hi[k] else c + dd, lo[k], hi[k]))
                for k, (c, dd) in enumerate(zip(c0[:2], d))
            ]
            c1 = (pos[0], pos[1], float(np.clip(c0[2] + rng.uniform(-0.005, 0.005) * span, 1.0, WORLD_SCALE)))
        on_twos = bool(rng.random() < 0.5)
        return Scene(start, length, bg, bg_art, actors, c0, c1, on_twos)

    def plan(self, seed: int, index: int = 0) -> list[Scene]:
        """The scenes of clip ``index`` for ``seed`` (two with a hard cut with probability ``cut_prob``)."""
        rng = np.random.default_rng([int(seed), int(index)])
        n = self.cfg.frames
        cut = n >= 4 and rng.random() < self.cfg.cut_prob
        k = int(rng.integers(n // 4, 3 * n // 4 + 1)) if cut else n
        scenes = [self._scene(rng, 0, k)]
        if cut:
            scenes.append(self._scene(rng, k, n - k))
        return scenes

    def draw(self, scene: Scene, t: int) -> np.ndarray:
        """Frame ``t`` (scene-local) as (H, W, 3) uint8."""

        span = max(1, scene.length - 1)
        ta = t - t % 2 if scene.on_twos else t
        world = scene.background.copy()
        for a in sorted(scene.actors, key=lambda a: a.p0[1]):  # farther (higher) characters first
            u = _ease(ta / span)
            scale = a.scale0 + (a.scale1 - a.scale0) * u
            sprite = a.sprite(scale)
            x = a.p0[0] + (a.p1[0] - a.p0[0]) * u
            y = a.p0[1] + (a.p1[1] - a.p0[1]) * u - a.bob * abs(np.sin(np.pi * ta / a.bob_period))
            _paste(world, sprite, x, y - sprite.height / 2)
        return _camera_frame(
            world, scene.cam0, scene.cam1, _ease(t / span), self.view, (self.cfg.width, self.cfg.height)
        )

    def render(self, seed: int, index: int = 0) -> tuple[np.ndarray, dict]:
        """All frames of a clip, (F, H, W, 3) uint8, and its metadata (see ``clip_meta``)."""
        scenes = self.plan(seed, index)
        frames = np.stack([self.draw(s, t) for s in scenes for t in range(s.length)])
        return frames, self.clip_meta(seed, index, scenes)

    def clip_meta(self, seed: int, index: int, scenes: list[Scene]) -> dict:
        """JSON-able description: config, seed, cut frames (first frame of each new scene) and the art used."""
        return {
            "format_version": FORMAT_VERSION,
            "config": asdict(self.cfg),
            "seed": int(seed),
            "index": int(index),
            "cuts": [s.start for s in scenes[1:]],
            "scenes": [
                {
                    "start": s.start,
                    "length": s.length,
                    "background_art": s.background_art,
                    "characters": [a.art for a in s.actors],
                    "on_twos": s.on_twos,
                    "camera": [list(s.cam0), list(s.cam1)],
                }
                for s in scenes
            ],
        }


def write_clip(renderer: ClipRenderer, seed: int, index: int, clip_dir: Path) -> dict:
    """Render clip ``index`` into ``clip_dir/00000000.png ...`` (frames already there are kept), then meta.json."""
    from ..weights import atomic_write_bytes

    scenes = renderer.plan(seed, index)
    for s in scenes:
        for t in range(s.length):
            path = clip_dir / f"{s.start + t:08d}.png"
            if not path.is_file():
                save_png_atomic(renderer.draw(s, t), path)
    meta = renderer.clip_meta(seed, index, scenes)
    atomic_write_bytes(clip_dir / "meta.json", json.dumps(meta, indent=1).encode())
    return meta


def render_folder(
    out: str | Path,
    clips: int,
    write: Callable[[int, Path], object],
    want: dict,
    *,
    func: str,
    desc: str,
    progress: bool,
) -> tuple[int, int, float]:
    """Write clips ``0..clips-1`` to ``out/clip_NNNN`` with ``write(index, clip_dir)``, resumably.

    A clip whose meta.json exists is kept when every key of ``want`` matches it, else a ValueError naming ``func``
    says it was rendered with other settings. Returns (rendered, kept, seconds).
    """
    import time

    from tqdm import tqdm

    out = Path(out)
    done = skipped = 0
    t0 = time.perf_counter()
    for i in tqdm(range(clips), desc=desc, unit="clip", disable=not progress):
        clip_dir = out / f"clip_{i:04d}"
        meta_path = clip_dir / "meta.json"
        if meta_path.is_file():
            old = json.loads(meta_path.read_text())
            if any(old.get(k) != v for k, v in want.items()):
                raise ValueError(
                    f"{func}: {str(clip_dir)!r} was rendered with other settings "
                    f"(seed {old.get('seed')}, {old.get('config')}); use another --out folder"
                )
            skipped += 1
            continue
        write(i, clip_dir)
        done += 1
    return done, skipped, time.perf_counter() - t0


def render_clips(
    out: str | Path,
    clips: int,
    cfg: RenderConfig,
    seed: int = 0,
    *,
    cache_dir: str | Path | None = None,
    renderer: str = "auto",
    progress: bool = True,
) -> dict:
    """Render clips ``0..clips-1`` into ``out/clip_0000/`` ...; finished clips (with meta.json) are skipped.

    Returns a summary: clips rendered / skipped, frames written, SVG renders and cache hits, skipped SVGs.
    """
    if clips < 1:
        raise ValueError(f"render_clips: clips must be >= 1, got {clips}")
    r = ClipRenderer(cfg, ArtCache(cache_dir, renderer))
    want = {"config": asdict(cfg), "seed": seed}
    done, skipped, seconds = render_folder(
        out,
        clips,
        lambda i, d: write_clip(r, seed, i, d),
        want,
        func="render_clips",
        desc=f"render {cfg.split}",
        progress=progress,
    )
    summary = {
        "clips_rendered": done,
        "clips_skipped": skipped,
        "seconds": round(seconds, 2),
        "seconds_per_frame": round(seconds / (done * cfg.frames), 4) if done else None,
        "svg_pool": len(r.pool.files),
        "svg_symlinks_skipped": r.pool.symlinks,
        "svg_failed": len(r.cache.failed),
        "svg_rendered": r.cache.rendered,
        "svg_cache_hits": r.cache.hits,
    }
    log.info("render_clips: %s", summary)
    return summary
