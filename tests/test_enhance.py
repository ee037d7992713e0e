"""HR-SR enhancement: sharpens soft frames; `vqdsr enhance-hr` mirrors a folder tree and resumes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vqdsr_core.cli import main
from vqdsr_core.enhance import enhance_frames, find_jobs
from vqdsr_core.importers.ncnn import load_animevideov3
from vqdsr_core.losses import gaussian_blur
from vqdsr_core.metrics import psnr_y


def _high_pass(t: torch.Tensor) -> float:
    return (t - gaussian_blur(t, 5)).pow(2).mean().item()


def test_enhance_frames_sharpens_soft_frames(cartoon_tensor):
    model = load_animevideov3()
    hr = cartoon_tensor(2, 48, 64, seed=5)
    soft = gaussian_blur(hr, 5, 0.8)
    out = enhance_frames(soft, model)
    assert out.shape == soft.shape and out.min() >= 0 and out.max() <= 1
    assert psnr_y(out, hr) > psnr_y(soft, hr) + 1.5  # closer to the crisp original
    assert _high_pass(out) > 2 * _high_pass(soft)  # lines got sharper
    with pytest.raises(ValueError, match="enhance_frames"):
        enhance_frames(soft[0], model)


def _write_tree(root, cartoon):
    frames = cartoon(3, 32, 40, seed=6)
    (root / "clip_a").mkdir(parents=True)
    (root / "show" / "clip_b").mkdir(parents=True)
    Image.fromarray(frames[0]).save(root / "clip_a" / "0001.png")
    Image.fromarray(frames[1]).save(root / "clip_a" / "0002.png")
    Image.fromarray(frames[2]).save(root / "show" / "clip_b" / "f.jpg", quality=95)
    (root / "show" / "notes.txt").write_text("not a frame")
    return frames


def test_enhance_hr_cli_mirrors_and_resumes(tmp_path, cartoon):
    src, dst = tmp_path / "in", tmp_path / "out"
    frames = _write_tree(src, cartoon)
    assert main(["enhance-hr", str(src), str(dst), "--no-progress"]) == 0
    outs = sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*") if p.is_file())
    assert outs == ["clip_a/0001.png", "clip_a/0002.png", "show/clip_b/f.png"]
    got = np.asarray(Image.open(dst / "clip_a" / "0001.png"))
    assert got.shape == frames[0].shape and got.dtype == np.uint8
    assert 0 < np.abs(got.astype(int) - frames[0]).mean() < 20  # changed, but the same picture

    # resume: nothing is redone; a deleted frame is redone alone
    stamps = {p: p.stat().st_mtime_ns for p in dst.rglob("*.png")}
    (dst / "clip_a" / "0002.png").unlink()
    assert main(["enhance-hr", str(src), str(dst), "--no-progress", "--tile", "24"]) == 0
    redone = [p for p in dst.rglob("*.png") if stamps.get(p) != p.stat().st_mtime_ns]
    assert [p.name for p in redone] == ["0002.png"]
    assert not list(dst.rglob("*.tmp"))

    # tiled output matches whole-frame output closely
    whole = np.asarray(Image.open(dst / "clip_a" / "0001.png")).astype(int)
    tiled_dir = tmp_path / "tiled"
    assert main(["enhance-hr", str(src / "clip_a"), str(tiled_dir), "--no-progress", "--tile", "24"]) == 0
    tiled = np.asarray(Image.open(tiled_dir / "0001.png")).astype(int)
    assert np.abs(tiled - whole).max() <= 2


def test_enhance_hr_errors(tmp_path, capsys):
    assert main(["enhance-hr", str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    assert "not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["enhance-hr", str(tmp_path / "empty"), str(tmp_path / "out")]) == 2
    assert "no image frames" in capsys.readouterr().err
    with pytest.raises(ValueError, match="must not lie inside"):
        find_jobs(tmp_path, tmp_path / "out")
    assert main(["enhance-hr", str(tmp_path), str(tmp_path / "o2"), "--tile", "3"]) == 2


def test_enhance_hr_video_input(tmp_path, cartoon):
    video = pytest.importorskip("vqdsr_core.data.video", reason="video reading not available")
    av = pytest.importorskip("av")
    try:
        video._ffms2()
    except Exception as e:  # any failure to load ffms2 means: skip
        pytest.skip(f"ffms2 not usable: {e}")
    frames = cartoon(3, 32, 48, seed=7)
    src = tmp_path / "in"
    src.mkdir()
    with av.open(str(src / "clip.mkv"), "w") as out:
        stream = out.add_stream("ffv1", rate=24)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "bgr0"
        for f in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="bgr0")))
        out.mux(stream.encode())
    dst = tmp_path / "out"
    assert main(["enhance-hr", str(src), str(dst), "--no-progress"]) == 0
    written = sorted(p.name for p in (dst / "clip").iterdir())
    assert written == ["00000000.png", "00000001.png", "00000002.png"]
    got = np.asarray(Image.open(dst / "clip" / "00000002.png")).astype(int)
    assert np.abs(got - frames[2]).mean() < 20
