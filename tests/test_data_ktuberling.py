"""The validation-only ktuberling set: themes and licences, clips like animation (holds, cuts, motion), the layout
``vqdsr eval`` reads, and that no training path can read it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from vqdsr_core import cli
from vqdsr_core.data.art import ArtCache, list_art
from vqdsr_core.data.clips import ClipDataset, FrameFolderDataset, list_frames, load_image
from vqdsr_core.data.ktuberling import KTUBERLING_ROOT, KtConfig, KtRenderer, list_themes, render_heldout, theme_licence
from vqdsr_core.evaluation.run import load_clips

pytestmark = pytest.mark.skipif(
    not KTUBERLING_ROOT.is_dir() or not shutil.which("rsvg-convert"),
    reason="needs ktuberling-data and rsvg-convert (apt-get install ktuberling-data librsvg2-bin)",
)

SMALL = {"width": 128, "height": 72, "frames": 24}


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> ArtCache:
    return ArtCache(tmp_path_factory.mktemp("art_cache"), "rsvg")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, cache):
    """Four small clips, cut probability 1 for clip structure checks."""
    out = tmp_path_factory.mktemp("kt")
    summary = render_heldout(out, 4, KtConfig(**SMALL, cut_prob=1.0), seed=3, cache_dir=cache.cache_dir, progress=False)
    return out, summary


def mad(frames: np.ndarray) -> np.ndarray:
    return np.abs(np.diff(frames.astype(np.int16), axis=0)).mean(axis=(1, 2, 3))


def test_themes_and_licences_come_from_the_package():
    themes = {t.name: t for t in list_themes()}
    assert len(themes) == 10 and all(t.pieces for t in themes.values())
    assert themes["moon"].licence == "CC-BY"  # the one CC-BY theme of the copyright file
    assert {t.licence for n, t in themes.items() if n != "moon"} == {"GPL-2+"}
    assert themes["default_theme"].title == "Potato Guy" and themes["pizzeria"].bgcolor == "#e8a560"


def test_theme_licence_reads_dep5_last_match_wins(tmp_path):
    cp = tmp_path / "copyright"
    cp.write_text(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
        "Files: *\nCopyright: someone\nLicense: GPL-2+\n\n"
        "Files: pics/a.svg\n pics/b.svgz\nCopyright: other\nLicense: CC0\n text of the licence\n"
    )
    assert theme_licence("/x/pics/b.svgz", cp) == "CC0"
    assert theme_licence("c.svg", cp) == "GPL-2+"
    assert theme_licence("c.svg", tmp_path / "missing").startswith("unknown")


def test_clips_hold_cut_and_move_like_animation(cache):
    r = KtRenderer(KtConfig(**SMALL, cut_prob=1.0), cache)
    frames, meta = r.render(3, 1)
    assert frames.shape == (24, 72, 128, 3) and frames.dtype == np.uint8
    assert meta["validation_only"] is True and meta["set"] == "ktuberling"
    (cut,) = meta["cuts"]
    assert cut == 12  # both shots need >= 12 frames: with 24 frames the cut sits at 12
    d = mad(frames)
    assert d[cut - 1] > 3 * max(np.median(d), 0.5)  # the hard cut is the biggest change
    assert meta["still"], "every clip holds still somewhere"
    for first, last in meta["still"]:
        assert last - first + 1 >= 6
        assert all(np.array_equal(frames[first], frames[t]) for t in range(first + 1, last + 1))  # identical HR
    still = {t for a, b in meta["still"] for t in range(a + 1, b + 1)}
    moving = [t for t in range(1, 24) if t not in still and t != cut]
    assert sum(d[t - 1] > 0 for t in moving) >= len(moving) // 2  # outside the holds things move
    assert "ktuberling" in meta["art_credit"] and all(s["licence"] in meta["art_credit"] for s in meta["shots"])
    src = KtRenderer(KtConfig(**SMALL), cache).source()
    assert meta["art_source"] == src and "GPL-2+; 'The Moon': CC-BY;" in src  # nine GPL-2+ themes, one CC-BY


def test_same_seed_same_frames_other_seed_other_frames(cache):
    r = KtRenderer(KtConfig(**SMALL), cache)
    a, meta_a = r.render(7, 0)
    b, meta_b = KtRenderer(KtConfig(**SMALL), cache).render(7, 0)
    c, _ = r.render(8, 0)
    assert np.array_equal(a, b) and meta_a == meta_b
    assert not np.array_equal(a, c)


def test_set_is_readable_by_eval_and_resumable(rendered, cache):
    out, summary = rendered
    assert summary["clips_rendered"] == 4
    clips = load_clips(out)
    assert [c.name for c in clips] == [f"clip_{i:04d}" for i in range(4)]
    for c in clips:
        meta = json.loads((out / c.name / "meta.json").read_text())
        assert c.hr.shape == (24, 3, 72, 128) and c.cuts == meta["cuts"] == [12]
        assert c.credit == meta["art_credit"] and c.source == meta["art_source"]
    first_themes = {json.loads((out / c.name / "meta.json").read_text())["shots"][0]["theme"] for c in clips}
    assert len(first_themes) == 4  # consecutive clips open on different themes
    again = render_heldout(out, 4, KtConfig(**SMALL, cut_prob=1.0), seed=3, cache_dir=cache.cache_dir, progress=False)
    assert again["clips_rendered"] == 0 and again["clips_skipped"] == 4
    with pytest.raises(ValueError, match="other settings"):
        render_heldout(out, 4, KtConfig(**SMALL), seed=4, cache_dir=cache.cache_dir, progress=False)


def test_training_datasets_refuse_the_set(rendered, tmp_path):
    out, _ = rendered
    with pytest.raises(ValueError, match=r"ClipDataset: .*validation-only"):
        ClipDataset(out, num_frame=5, crop=32)
    with pytest.raises(ValueError, match=r"ClipDataset: .*validation-only"):
        ClipDataset(out / "clip_0002", num_frame=5, crop=32)  # one clip alone, too
    mixed = tmp_path / "mixed"
    shutil.copytree(out / "clip_0000", mixed / "kt")
    ok = mixed / "other"
    ok.mkdir()
    shutil.copy(list_frames(out / "clip_0000")[0], ok / "00000000.png")
    with pytest.raises(ValueError, match=r"FrameFolderDataset: .*validation-only"):
        FrameFolderDataset(mixed, crop=32)
    assert len(FrameFolderDataset(ok, crop=32)) == 1  # an ordinary folder still works
    assert load_image(ok / "00000000.png").shape == (72, 128, 3)


def test_art_pools_refuse_ktuberling(tmp_path, capsys):
    with pytest.raises(ValueError, match="validation-only"):
        list_art(KTUBERLING_ROOT)
    with pytest.raises(ValueError, match="validation-only"):
        list_art(KTUBERLING_ROOT.parent.parent)  # a folder holding it
    copy = tmp_path / "copied"
    copy.mkdir()
    for name in ("moon.svg", "moon.theme"):
        shutil.copy(KTUBERLING_ROOT / name, copy / name)
    with pytest.raises(ValueError, match="ktuberling theme"):
        list_art(copy)  # a copy elsewhere is recognised by its .theme file
    (copy / "moon.theme").unlink()
    assert len(list_art(copy)[0]) == 1
    argv = ["render-clips", "--out", str(tmp_path / "o"), "--art-root", str(KTUBERLING_ROOT), "--clips", "1"]
    assert cli.main(argv) == 2
    assert "validation-only" in capsys.readouterr().err


def test_cli_renders_the_set(tmp_path, cache):
    out = tmp_path / "kt_val"
    argv = ["render-heldout", "--out", str(out), "--clips", "1", "--frames", "24", "--size", "128x72"]
    assert cli.main([*argv, "--themes", "moon", "--cut-prob", "0", "--cache-dir", str(cache.cache_dir)]) == 0
    meta = json.loads((out / "clip_0000" / "meta.json").read_text())
    assert meta["cuts"] == [] and [s["theme"] for s in meta["shots"]] == ["moon"]
    assert len(list_frames(out / "clip_0000")) == 24
    assert cli.main([*argv, "--frames", "12"]) == 2  # fewer than 24 frames is refused
    assert cli.main([*argv, "--themes", "nope"]) == 2
