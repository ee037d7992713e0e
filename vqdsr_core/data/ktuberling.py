"""A validation-only held-out set from KDE's ktuberling themes: art the training data never comes from.

Debian's ``ktuberling-data`` ships ten cartoon themes in ``/usr/share/ktuberling/pics``: a gameboard SVG(Z) whose
element ``background`` is a full painted scene, and a ``.theme`` file naming the stamp pieces (element ids) and the
colour around the board. ``KtRenderer`` turns them into clips that behave like real animation:

- **Shots.** 1 shot, or 2 with a hard cut (probability ``cut_prob``; each shot >= 12 frames). A shot is one theme's
  scene filling the frame (cropped to its painted area, drawn ``WORLD_SCALE`` times finer than the output, so the
  camera only downsamples) with 2..``max_pieces`` stamps on it.
- **Camera.** A sub-pixel pan, tilt, slow zoom, pan + zoom, or a still camera, eased (never a full stop).
- **Stamps.** Each piece either stays put or moves along a curved path (a quadratic Bezier, 20-100 % of the view
  width), sometimes hopping, sometimes "on twos" (a new position every 2nd frame).
- **Still stretches.** Every clip holds >= 6 frames where nothing changes (the HR frames are identical): animation
  time stops while the frame counter runs. ``meta.json`` lists them as ``still`` ([first, last] frames).

Everything comes from ``numpy.random.default_rng([seed, clip_index])``, except the order in which clips visit
the themes (a permutation drawn from ``seed``: ten clips open on ten different themes). The output layout is
``render.py``'s (``OUT/clip_0000/00000000.png`` + ``meta.json`` with ``cuts``), so ``vqdsr eval --clips`` reads it, and
``meta.json`` carries ``"validation_only": true``, which ``ClipDataset`` / ``FrameFolderDataset`` refuse;
``art.list_art`` refuses the ktuberling folder itself, so ``render-clips`` cannot draw training art from it.

Licence: the art is GPL-2+ (the moon theme CC-BY), per ``/usr/share/doc/ktuberling-data/copyright``; each clip's
``meta.json`` names its themes and licences in ``art_credit`` and the whole set's in ``art_source``. Renders are made
at evaluation time, never committed.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .art import ArtCache, bucket_for
from .clips import save_png_atomic
from .render import _camera_frame, _ease, _fit, _paste, render_folder

log = logging.getLogger(__name__)

KTUBERLING_ROOT = Path("/usr/share/ktuberling/pics")
COPYRIGHT_FILE = Path("/usr/share/doc/ktuberling-data/copyright")
SET_NAME = "ktuberling"
FORMAT_VERSION = 1
WORLD_SCALE = 2.0  # world px per output px at zoom 1; zoom stays in [1, MAX_ZOOM]
MAX_ZOOM = 1.25
MIN_FRAMES = 24
MIN_SHOT = 12
HOLD = (6, 10)  # frames of a still stretch
CAMERAS = ("pan", "tilt", "zoom", "pan_zoom", "still")
CAMERA_PROBS = (0.3, 0.15, 0.2, 0.15, 0.2)


@dataclass(frozen=True)
class Theme:
    """One ktuberling theme: ``name`` (file stem), ``title`` (.desktop Name=), gameboard, colour, pieces, licence."""

    name: str
    title: str
    board: Path
    bgcolor: str
    pieces: tuple[str, ...]
    licence: str


def _dep5_paragraphs(text: str) -> list[dict[str, str]]:
    paras, cur, key = [], {}, None
    for line in [*text.splitlines(), ""]:
        if not line.strip():
            if cur:
                paras.append(cur)
            cur, key = {}, None
        elif line[0] in " \t" and key:
            cur[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, val = line.partition(":")
            key = key.strip().lower()
            cur[key] = val.strip()
    return paras


def theme_licence(board: str | Path, copyright_file: str | Path = COPYRIGHT_FILE) -> str:
    """The licence of a gameboard file from the package's DEP-5 copyright file (last matching ``Files:`` wins)."""
    path = Path(copyright_file)
    if not path.is_file():
        return f"unknown (no {path})"
    rel = f"pics/{Path(board).name}"
    licence = None
    for para in _dep5_paragraphs(path.read_text(errors="replace")):
        if "files" in para and "license" in para:
            if any(fnmatch.fnmatchcase(rel, pat) for pat in para["files"].split()):
                licence = para["license"].splitlines()[0].strip()
    return licence or f"unknown (not in {path})"


def _desktop_title(path: Path, default: str) -> str:
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("Name="):
                return line[5:].strip()
    return default


def list_themes(root: str | Path = KTUBERLING_ROOT, copyright_file: str | Path = COPYRIGHT_FILE) -> list[Theme]:
    """Every ``*.theme`` under ``root`` whose gameboard exists, sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"list_themes: {str(root)!r} does not exist (Debian: apt-get install --no-install-recommends "
            "ktuberling-data)"
        )
    themes = []
    for path in sorted(root.glob("*.theme")):
        try:
            xml = ET.fromstring(path.read_text(errors="replace").strip())
        except ET.ParseError as e:
            log.warning("list_themes: skipping %s: %s", path, e)
            continue
        board = root / xml.get("gameboard", "")
        pieces = tuple(o.get("name") for o in xml.iter("object") if o.get("name"))
        if not board.is_file() or not pieces:
            log.warning("list_themes: skipping %s: no gameboard file or no pieces", path)
            continue
        title = _desktop_title(root / xml.get("desktop", ""), path.stem)
        bg = xml.get("bgcolor", "#ffffff")
        themes.append(Theme(path.stem, title, board, bg, pieces, theme_licence(board, copyright_file)))
    if not themes:
        raise ValueError(f"list_themes: no usable ktuberling .theme files under {str(root)!r}")
    return themes


@dataclass
class KtConfig:
    """What a ktuberling clip looks like (everything except the seed)."""

    width: int = 640
    height: int = 360
    frames: int = 30
    cut_prob: float = 0.5
    max_pieces: int = 5
    themes: list[str] = field(default_factory=list)  # theme names; empty = all
    root: str = str(KTUBERLING_ROOT)

    def check(self) -> None:
        if self.width < 32 or self.height < 32 or self.width % 4 or self.height % 4:
            raise ValueError(f"KtConfig: size must be >= 32x32 and a multiple of 4, got {self.width}x{self.height}")
        if self.frames < MIN_FRAMES:
            raise ValueError(f"KtConfig: frames must be >= {MIN_FRAMES}, got {self.frames}")
        if not 0 <= self.cut_prob <= 1:
            raise ValueError(f"KtConfig: cut_prob must be in [0, 1], got {self.cut_prob}")
        if not 2 <= self.max_pieces <= 8:
            raise ValueError(f"KtConfig: max_pieces must be in 2..8, got {self.max_pieces}")


@dataclass
class Stamp:
    element: str
    sprite: object = field(repr=False)  # PIL RGBA, world px
    p0: tuple[float, float]
    ctrl: tuple[float, float]
    p1: tuple[float, float]
    hop: float  # world px
    hop_period: float  # frames
    on_twos: bool

    def at(self, tau: int, span: int) -> tuple[float, float]:
        ta = tau - tau % 2 if self.on_twos else tau
        u = _ease(ta / span)
        x, y = ((1 - u) ** 2 * a + 2 * (1 - u) * u * c + u**2 * b for a, c, b in zip(self.p0, self.ctrl, self.p1))
        return x, y - self.hop * abs(np.sin(np.pi * ta / self.hop_period))


@dataclass
class Shot:
    start: int
    length: int
    theme: Theme
    world: object = field(repr=False)  # PIL RGBA
    stamps: list[Stamp]
    camera: str
    cam0: tuple[float, float, float]  # centre x, centre y, zoom
    cam1: tuple[float, float, float]
    hold: tuple[int, int] | None  # (first shot-local frame, length) of the still stretch

    def tau(self, t: int) -> int:
        """Animation time of shot-local frame ``t``: it stands still during the hold."""
        if self.hold is None:
            return t
        h0, n = self.hold
        return min(t, h0) + max(0, t - (h0 + n - 1))

    @property
    def span(self) -> int:
        return max(1, self.tau(self.length - 1))


class KtRenderer:
    """Plans and draws ktuberling clips for one ``KtConfig``; SVG element renders are cached by an ``ArtCache``."""

    def __init__(self, cfg: KtConfig, cache: ArtCache | None = None) -> None:
        cfg.check()
        self.cfg = cfg
        self.cache = cache or ArtCache(renderer="rsvg")
        if self.cache.renderer != "rsvg":
            raise ValueError("KtRenderer: ktuberling pieces are SVG elements; the ArtCache must use rsvg-convert")
        themes = list_themes(cfg.root)
        if cfg.themes:
            missing = sorted(set(cfg.themes) - {t.name for t in themes})
            if missing:
                raise ValueError(f"KtRenderer: unknown themes {missing}; known: {[t.name for t in themes]}")
            themes = [t for t in themes if t.name in cfg.themes]
        self.themes = themes
        self.view = (cfg.width * WORLD_SCALE, cfg.height * WORLD_SCALE)  # world px seen at zoom 1

    def _world(self, theme: Theme, rng: np.random.Generator):
        """The theme's painted scene cropped to its opaque area, over its bgcolor, covering the view with margin."""
        from PIL import Image

        probe = self.cache.get(theme.board, 256, "background")
        if probe is None:
            raise RuntimeError(f"KtRenderer: the background of {theme.board} does not render")
        ys, xs = np.nonzero(probe[..., 3] > 16)
        ph, pw = probe.shape[:2]
        frac = (xs.min() / pw, ys.min() / ph, (xs.max() + 1) / pw, (ys.max() + 1) / ph)
        bw, bh = (frac[2] - frac[0]) * pw, (frac[3] - frac[1]) * ph
        margin = rng.uniform(1.2, 1.4)
        k = margin * max(self.view[0] / bw, self.view[1] / bh)
        ww, wh = round(bw * k), round(bh * k)
        need = max(ww / (frac[2] - frac[0]), wh / (frac[3] - frac[1]))
        full = self.cache.get(theme.board, round(need), "background")
        if full is None:
            raise RuntimeError(f"KtRenderer: the background of {theme.board} does not render at {bucket_for(need)} px")
        fh, fw = full.shape[:2]
        im = Image.fromarray(full)
        box = (frac[0] * fw, frac[1] * fh, frac[2] * fw, frac[3] * fh)
        im = im.resize((ww, wh), Image.Resampling.LANCZOS, box=box)
        world = Image.new("RGBA", (ww, wh), theme.bgcolor)
        world.alpha_composite(im)
        return world

    def _piece(self, theme: Theme, element: str, side: float) -> np.ndarray | None:
        """The element cropped to its visible pixels, rendered with that part's long side >= ``side``."""
        size = round(side)
        for _ in range(3):  # an element's box can be far larger than what it draws: render finer until it fits
            rgba = self.cache.get(theme.board, size, element)
            if rgba is None:
                return None
            ys, xs = np.nonzero(rgba[..., 3] > 8)
            if not len(ys):
                return None
            crop = rgba[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
            if max(crop.shape[:2]) >= side or bucket_for(size) == bucket_for(10**9):
                return crop if max(crop.shape[:2]) >= side / 2 else None
            size = round(bucket_for(size) * side / max(crop.shape[:2]))
        return None

    def _camera(self, rng: np.random.Generator, world, span: int, moving: bool) -> tuple[str, tuple, tuple]:
        (vw, vh), (ww, wh) = self.view, world.size
        lo, hi = (vw / 2, vh / 2), (ww - vw / 2, wh - vh / 2)  # the widest view (zoom 1) stays in the world
        kinds = CAMERAS if moving else CAMERAS[:-1]  # a still camera needs a moving stamp
        probs = np.array(CAMERA_PROBS[: len(kinds)])
        kind = kinds[int(rng.choice(len(kinds), p=probs / probs.sum()))]
        z0 = rng.uniform(1.0, 1.12)
        c0 = [rng.uniform(lo[0], hi[0]), rng.uniform(lo[1], hi[1])]
        c1 = list(c0)
        if kind in ("pan", "tilt", "pan_zoom"):
            axis = 1 if kind == "tilt" else 0
            speed = rng.uniform(0.15, 1.5) * WORLD_SCALE  # output px per frame, in world px at zoom 1
            d = rng.choice([-1, 1]) * min(speed * span, hi[axis] - lo[axis])
            if not lo[axis] <= c0[axis] + d <= hi[axis]:
                d = -d
            c1[axis] = float(np.clip(c0[axis] + d, lo[axis], hi[axis]))
            if axis == 0:  # pans drift a little vertically, as hand-held ones do
                c1[1] = float(np.clip(c0[1] + rng.uniform(-0.05, 0.05) * vh, lo[1], hi[1]))
        z1 = z0
        if kind in ("zoom", "pan_zoom"):
            rate = rng.uniform(0.003, 0.006) * span * (1 if z0 < (1 + MAX_ZOOM) / 2 else -1)
            z1 = float(np.clip(z0 * (1 + rate), 1.0, MAX_ZOOM))
        return kind, (c0[0], c0[1], z0), (c1[0], c1[1], z1)

    def _in_view(self, cam: tuple, fx: float, fy: float) -> tuple[float, float]:
        """World point at (fx, fy) of the half-view (-1..1 across) seen by camera ``cam`` (x, y, zoom)."""
        return cam[0] + fx * self.view[0] / cam[2] / 2, cam[1] + fy * self.view[1] / cam[2] / 2

    def _stamps(self, rng: np.random.Generator, theme: Theme, cam0: tuple, cam1: tuple) -> list[Stamp]:
        vh = self.view[1]
        n = int(rng.integers(2, self.cfg.max_pieces + 1))
        names = list(rng.choice(len(theme.pieces), size=min(n, len(theme.pieces)), replace=False))
        stamps = []
        for i in names:
            element = theme.pieces[int(i)]
            side = rng.uniform(0.15, 0.45) * vh
            rgba = self._piece(theme, element, side)
            if rgba is None:
                log.debug("KtRenderer: %s#%s does not render; skipped", theme.board.name, element)
                continue
            sprite = _fit(rgba, side, mirror=bool(rng.random() < 0.3))
            f0 = (rng.uniform(-0.8, 0.8), rng.uniform(-0.6, 0.8))
            p0 = self._in_view(cam0, *f0)
            if rng.random() < 0.25:  # a stamp already placed: it stays put
                stamps.append(Stamp(element, sprite, p0, p0, p0, 0.0, 1.0, False))
                continue
            direction = rng.choice([-1, 1]) if abs(f0[0]) < 0.3 else -np.sign(f0[0])
            f1 = (float(np.clip(f0[0] + direction * rng.uniform(0.4, 1.6), -0.9, 0.9)), rng.uniform(-0.6, 0.8))
            p1 = self._in_view(cam1, *f1)
            dx, dy, bend = p1[0] - p0[0], p1[1] - p0[1], rng.uniform(-0.5, 0.5)
            ctrl = ((p0[0] + p1[0]) / 2 - dy * bend, (p0[1] + p1[1]) / 2 + dx * bend)  # off the line: a curve
            hop = rng.uniform(0.02, 0.06) * vh if rng.random() < 0.4 else 0.0
            stamps.append(
                Stamp(element, sprite, p0, ctrl, p1, hop, float(rng.uniform(6, 14)), bool(rng.random() < 0.5))
            )
        return stamps

    def _shot(self, rng: np.random.Generator, theme: Theme, start: int, length: int, hold: bool) -> Shot:
        world = self._world(theme, rng)
        hold_at = None
        if hold:
            n = int(rng.integers(HOLD[0], min(HOLD[1], length // 2) + 1))
            where = int(rng.integers(3))  # at the start, in the middle, at the end
            h0 = 0 if where == 0 else (length - n if where == 2 else int(rng.integers(1, length - n)))
            hold_at = (h0, n)
        shot = Shot(start, length, theme, world, [], "still", (0.0, 0.0, 1.0), (0.0, 0.0, 1.0), hold_at)
        span = shot.span
        # draw a camera that may be still, then stamps; a still camera with only still stamps is redrawn moving
        kind, cam0, cam1 = self._camera(rng, world, span, moving=True)
        stamps = self._stamps(rng, theme, cam0, cam1)
        if kind == "still" and not any(s.p0 != s.p1 for s in stamps):
            kind, cam0, cam1 = self._camera(rng, world, span, moving=False)
        shot.camera, shot.cam0, shot.cam1, shot.stamps = kind, cam0, cam1, stamps
        return shot

    def plan(self, seed: int, index: int = 0) -> list[Shot]:
        """The shots of clip ``index`` for ``seed``; at least one of them holds a still stretch."""
        rng = np.random.default_rng([int(seed), int(index)])
        n = self.cfg.frames
        cut = n >= 2 * MIN_SHOT and rng.random() < self.cfg.cut_prob
        k = int(rng.integers(MIN_SHOT, n - MIN_SHOT + 1)) if cut else n
        lengths = [k, n - k] if cut else [n]
        holds = [bool(rng.random() < 0.6) for _ in lengths]
        if not any(holds):
            holds[int(np.argmax(lengths))] = True
        order = np.random.default_rng([int(seed)]).permutation(len(self.themes))  # consecutive clips: new themes
        first = self.themes[int(order[index % len(self.themes)])]
        shots = [self._shot(rng, first, 0, lengths[0], holds[0])]
        if cut:
            others = [t for t in self.themes if t.name != first.name] or self.themes
            theme = first if rng.random() < 0.3 else others[int(rng.integers(len(others)))]  # same set, new framing
            shots.append(self._shot(rng, theme, k, lengths[1], holds[1]))
        return shots

    def draw(self, shot: Shot, t: int) -> np.ndarray:
        """Shot-local frame ``t`` as (H, W, 3) uint8; frames with the same animation time are identical."""

        tau, span = shot.tau(t), shot.span
        world = shot.world.copy()
        for s in sorted(shot.stamps, key=lambda s: s.p0[1]):  # lower on screen = nearer = drawn later
            x, y = s.at(tau, span)
            _paste(world, s.sprite, x, y)
        return _camera_frame(
            world, shot.cam0, shot.cam1, _ease(tau / span), self.view, (self.cfg.width, self.cfg.height)
        )

    def render(self, seed: int, index: int = 0) -> tuple[np.ndarray, dict]:
        """All frames of a clip, (F, H, W, 3) uint8, and its metadata (see ``clip_meta``)."""
        shots = self.plan(seed, index)
        frames = np.stack([self.draw(s, t) for s in shots for t in range(s.length)])
        return frames, self.clip_meta(seed, index, shots)

    def source(self) -> str:
        """The set's art and licences in one line: the most common licence, then the themes under another one."""
        by_licence: dict[str, list[str]] = {}
        for t in self.themes:
            by_licence.setdefault(t.licence, []).append(f"'{t.title}'")
        ranked = sorted(by_licence.items(), key=lambda kv: -len(kv[1]))
        text = ranked[0][0] + "".join(f"; {', '.join(titles)}: {lic}" for lic, titles in ranked[1:])
        return f"KDE ktuberling themes from Debian's ktuberling-data, {text}; rendered for evaluation only"

    def clip_meta(self, seed: int, index: int, shots: list[Shot]) -> dict:
        """JSON-able description: set name, validation-only mark, cuts, still stretches, credit, the shots."""
        themes = {s.theme.name: s.theme for s in shots}
        credit = ", ".join(f"'{t.title}' ({t.licence})" for t in themes.values())
        credit = f"KDE ktuberling {'themes' if len(themes) > 1 else 'theme'} {credit}, Debian ktuberling-data"
        return {
            "format_version": FORMAT_VERSION,
            "set": SET_NAME,
            "validation_only": True,
            "config": asdict(self.cfg),
            "seed": int(seed),
            "index": int(index),
            "cuts": [s.start for s in shots[1:]],
            "still": [[s.start + s.hold[0], s.start + s.hold[0] + s.hold[1] - 1] for s in shots if s.hold],
            "art_credit": credit,
            "art_source": self.source(),
            "shots": [
                {
                    "start": s.start,
                    "length": s.length,
                    "theme": s.theme.name,
                    "licence": s.theme.licence,
                    "camera": s.camera,
                    "camera_path": [list(s.cam0), list(s.cam1)],
                    "hold": list(s.hold) if s.hold else None,
                    "stamps": [{"element": p.element, "moving": p.p0 != p.p1, "on_twos": p.on_twos} for p in s.stamps],
                }
                for s in shots
            ],
        }


def write_clip(renderer: KtRenderer, seed: int, index: int, clip_dir: Path) -> dict:
    """Render clip ``index`` into ``clip_dir/00000000.png ...`` (frames already there are kept), then meta.json."""
    from ..weights import atomic_write_bytes

    shots = renderer.plan(seed, index)
    for s in shots:
        last: tuple[int, np.ndarray] | None = None  # a frame is a function of its animation time alone
        for t in range(s.length):
            path = clip_dir / f"{s.start + t:08d}.png"
            if not path.is_file():
                tau = s.tau(t)
                frame = last[1] if last is not None and last[0] == tau else renderer.draw(s, t)
                save_png_atomic(frame, path)
                last = (tau, frame)
    meta = renderer.clip_meta(seed, index, shots)
    atomic_write_bytes(clip_dir / "meta.json", json.dumps(meta, indent=1).encode())
    return meta


def render_heldout(
    out: str | Path,
    clips: int,
    cfg: KtConfig | None = None,
    seed: int = 0,
    *,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """Render ktuberling clips ``0..clips-1`` into ``out/clip_0000/`` ...; finished clips (with meta.json) are kept.

    Returns a summary: clips rendered / skipped, seconds, themes, element renders and cache hits.
    """
    if clips < 1:
        raise ValueError(f"render_heldout: clips must be >= 1, got {clips}")
    cfg = cfg or KtConfig()
    r = KtRenderer(cfg, ArtCache(cache_dir, "rsvg"))
    want = {"config": json.loads(json.dumps(asdict(cfg))), "seed": seed, "set": SET_NAME}
    done, skipped, seconds = render_folder(
        out,
        clips,
        lambda i, d: write_clip(r, seed, i, d),
        want,
        func="render_heldout",
        desc="render ktuberling",
        progress=progress,
    )
    summary = {
        "clips_rendered": done,
        "clips_skipped": skipped,
        "seconds": round(seconds, 2),
        "themes": [t.name for t in r.themes],
        "svg_rendered": r.cache.rendered,
        "svg_cache_hits": r.cache.hits,
    }
    log.info("render_heldout: %s", summary)
    return summary
