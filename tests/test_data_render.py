"""Clip-art animation renderer: held-out split rule, determinism, motion, hard cuts, broken art, resumable writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from vqdsr_core.data.art import DEFAULT_ART_ROOT, ArtCache, ArtPool, art_split, list_art
from vqdsr_core.data.render import ClipRenderer, RenderConfig, render_clips

SVG = """<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="120" viewBox="0 0 {w} 120">
<ellipse cx="{cx}" cy="80" rx="{rx}" ry="38" fill="rgb({r},{g},{b})" stroke="#1a1420" stroke-width="4"/>
<circle cx="{cx}" cy="28" r="22" fill="rgb({b},{r},{g})" stroke="#1a1420" stroke-width="4"/>
<rect x="{x2}" y="60" width="14" height="30" fill="rgb({g},{b},{r})"/></svg>"""


@pytest.fixture(scope="module")
def art(tmp_path_factory) -> Path:
    """A small art folder: 10+ train and 4+ held-out character SVGs, one broken SVG and one symlink."""
    root = tmp_path_factory.mktemp("art")
    rng = np.random.default_rng(0)
    counts = {"train": 0, "heldout": 0}
    i = 0
    while counts["train"] < 10 or counts["heldout"] < 4:
        name = f"thing_{i:03d}.svg"
        i += 1
        split = art_split(name)
        if counts[split] >= (10 if split == "train" else 4):
            continue
        counts[split] += 1
        w = int(rng.integers(60, 160))
        r, g, b = (int(v) for v in rng.integers(30, 256, 3))
        folder = root / ("people" if i % 2 else "animals")
        folder.mkdir(exist_ok=True)
        (folder / name).write_text(SVG.format(w=w, cx=w / 2, rx=w / 2 - 4, r=r, g=g, b=b, x2=w / 3))
    broken = next(f"broken_{k}.svg" for k in range(100) if art_split(f"broken_{k}.svg") == "train")
    (root / "people" / broken).write_text("<svg this is not xml")
    os.symlink(next((root / "people").glob("thing_*.svg")), root / "animals" / "link.svg")
    return root


def renderer(art: Path, cache: Path, **kw) -> ClipRenderer:
    cfg = RenderConfig(**{"width": 128, "height": 72, "frames": 8, "art_root": str(art), **kw})
    return ClipRenderer(cfg, ArtCache(cache))


def mad(frames: np.ndarray) -> np.ndarray:
    return np.abs(np.diff(frames.astype(np.int16), axis=0)).mean(axis=(1, 2, 3))


def test_split_rule_is_by_file_name_and_disjoint(art):
    assert art_split("a/b/cat.svg") == art_split("other/cat.svg") == art_split(Path("cat.svg"))
    everything, links = list_art(art)
    train, _ = list_art(art, "train")
    heldout, _ = list_art(art, "heldout")
    assert links == 1 and not any(p.is_symlink() for p in everything)
    assert set(train).isdisjoint(heldout) and set(train) | set(heldout) == set(everything)
    assert len(heldout) == 4 and len(train) == 11  # 10 + the broken one
    with pytest.raises(ValueError, match="split must be one of"):
        list_art(art, "test")
    with pytest.raises(FileNotFoundError, match="openclipart-svg"):
        list_art(art / "missing")


@pytest.mark.skipif(not DEFAULT_ART_ROOT.is_dir(), reason="openclipart-svg is not installed")
def test_openclipart_heldout_is_about_ten_percent():
    everything, links = list_art()
    heldout, _ = list_art(split="heldout")
    assert len(everything) > 1000 and links > 0
    assert 0.08 < len(heldout) / len(everything) < 0.12


def test_same_seed_same_frames_and_art_only_from_the_split(art, tmp_path):
    r = renderer(art, tmp_path / "c1", cut_prob=0.5)
    a, meta = r.render(11, 0)
    assert a.shape == (8, 72, 128, 3) and a.dtype == np.uint8
    b, meta_b = renderer(art, tmp_path / "c2", cut_prob=0.5).render(11, 0)  # fresh cache: same frames
    assert np.array_equal(a, b) and meta == meta_b
    assert not np.array_equal(a, r.render(12, 0)[0]) and not np.array_equal(a, r.render(11, 1)[0])
    for split in ("train", "heldout"):
        rs = renderer(art, tmp_path / "c1", split=split, cut_prob=1.0, svg_background_prob=1.0)
        used = set()
        for seed in range(4):
            for scene in rs.render(seed, 0)[1]["scenes"]:
                used |= set(scene["characters"]) | {scene["background_art"]}
        assert used and all(art_split(name) == split for name in used)
        assert not any("broken" in name for name in used)


def test_frames_move_and_hold_at_most_two_frames(art, tmp_path):
    r = renderer(art, tmp_path / "c", cut_prob=0.0)
    for seed in range(5):
        frames, meta = r.render(seed, 0)
        assert meta["cuts"] == []
        d1 = mad(frames)
        d2 = np.abs(frames[2:].astype(np.int16) - frames[:-2]).mean(axis=(1, 2, 3))
        assert (d2 > 0).all(), f"seed {seed}: a frame is held for 3+ frames"
        assert (d1[1::2] > 0).all() and d1.max() < 40  # on twos, a new drawing at every even frame
        if not meta["scenes"][0]["on_twos"]:
            assert (d1 > 0).all()


def test_hard_cut_is_detectable(art, tmp_path):
    r = renderer(art, tmp_path / "c", cut_prob=1.0)
    for seed in range(5):
        frames, meta = r.render(seed, 3)
        (k,) = meta["cuts"]
        assert 2 <= k <= 6 and len(meta["scenes"]) == 2
        d = mad(frames)
        assert d[k - 1] > 2 * np.delete(d, k - 1).max(), f"seed {seed}: cut at {k} not the clear maximum {d}"


def test_broken_svgs_are_skipped_and_remembered(art, tmp_path):
    cache = ArtCache(tmp_path / "c")
    broken = next((art / "people").glob("broken_*.svg"))
    assert cache.get(broken, 64) is None and broken in cache.failed
    assert ArtCache(tmp_path / "c").get(broken, 64) is None  # remembered on disk
    good = next((art / "people").glob("thing_*.svg"))
    rgba = cache.get(good, 100)
    assert rgba.shape[2] == 4 and max(rgba.shape[:2]) == 128 and rgba[..., 3].min() == 0 < rgba[..., 3].max()
    assert cache.rendered == 1 and ArtCache(tmp_path / "c").get(good, 120).shape == rgba.shape
    pool = ArtPool(art, "train", cache)
    rng = np.random.default_rng(0)
    assert all("broken" not in pool.draw(rng, 64)[0].name for _ in range(40)) and broken in cache.failed
    cairo = ArtCache(tmp_path / "cairo", renderer="cairosvg").get(good, 64)
    assert cairo.shape[2] == 4 and max(cairo.shape[:2]) == 64


def test_render_clips_is_resumable(art, tmp_path):
    cfg = RenderConfig(width=96, height=64, frames=5, art_root=str(art), cut_prob=0.5)
    out = tmp_path / "out"
    s = render_clips(out, 2, cfg, seed=4, cache_dir=tmp_path / "c", progress=False)
    assert s["clips_rendered"] == 2 and s["svg_symlinks_skipped"] == 1
    frame = out / "clip_0001" / "00000003.png"
    original = frame.read_bytes()
    meta = json.loads((out / "clip_0001" / "meta.json").read_text())
    assert meta["seed"] == 4 and meta["index"] == 1 and meta["config"]["split"] == "train"
    frame.unlink()
    (out / "clip_0001" / "meta.json").unlink()
    s = render_clips(out, 2, cfg, seed=4, cache_dir=tmp_path / "c", progress=False)
    assert (s["clips_rendered"], s["clips_skipped"]) == (1, 1) and frame.read_bytes() == original
    assert sorted(p.name for p in (out / "clip_0000").iterdir()) == [f"{i:08d}.png" for i in range(5)] + ["meta.json"]
    with pytest.raises(ValueError, match="rendered with other settings"):
        cfg2 = RenderConfig(width=64, height=64, frames=5, art_root=str(art))
        render_clips(out, 2, cfg2, seed=4, cache_dir=tmp_path / "c", progress=False)


def test_cli_render_clips(art, tmp_path):
    from vqdsr_core.cli import main

    args = ["render-clips", "--out", str(tmp_path / "o"), "--clips", "1", "--frames", "3", "--size", "64x48"]
    args += ["--art-root", str(art), "--cache-dir", str(tmp_path / "c"), "--split", "heldout", "--seed", "2"]
    assert main(args) == 0
    meta = json.loads((tmp_path / "o" / "clip_0000" / "meta.json").read_text())
    assert meta["config"]["split"] == "heldout" and meta["config"]["width"] == 64
    assert len(list((tmp_path / "o" / "clip_0000").glob("*.png"))) == 3
    with pytest.raises(SystemExit):
        main(["render-clips", "--out", str(tmp_path / "o"), "--size", "64"])
