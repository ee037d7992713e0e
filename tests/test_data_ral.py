"""prepare-ral: the scene filter drops held frames and keeps moving ones; resumable; clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vqdsr_core.data.ral import filter_video, frame_mad, prepare_ral
from vqdsr_core.data.video import VideoError


def write_video(path, frames, fps=24):
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.options = {"crf": "16", "preset": "ultrafast"}
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode())
    return path


@pytest.fixture
def held_video(tmp_path_factory, cartoon):
    """30 frames: 0-9 one held drawing, 10-19 a fast pan (new content every frame), 20-29 held again."""
    moving = cartoon(12, 64, 96, seed=5, motion=6)
    frames = np.concatenate([np.repeat(moving[:1], 10, 0), moving[1:11], np.repeat(moving[11:], 10, 0)])
    return write_video(tmp_path_factory.mktemp("ral") / "show.mp4", frames)


def kept(folder):
    return sorted(int(p.stem) for p in folder.glob("*.png"))


def test_scene_filter_drops_held_frames_keeps_motion(held_video, tmp_path):
    rec = filter_video(held_video, tmp_path / "show", threshold=3.0, progress=False)
    ids = kept(tmp_path / "show")
    assert ids[0] == 0 and not set(ids) & (set(range(1, 10)) | set(range(21, 30)))
    assert len(set(range(10, 21)) & set(ids)) >= 9
    assert rec["kept"] == len(ids) and rec["frames"] == 30
    everything = filter_video(held_video, tmp_path / "all", threshold=0.0, progress=False)
    assert everything["kept"] == 30
    capped = filter_video(held_video, tmp_path / "cap", threshold=3.0, max_frames=4, progress=False)
    assert capped["kept"] == 4 and kept(tmp_path / "cap") == ids[:4]


def test_resume_gives_the_same_corpus(held_video, tmp_path):
    out = tmp_path / "o"
    prepare_ral([held_video], out, threshold=3.0, progress=False)
    full = {p.name: p.read_bytes() for p in (out / "show").glob("*.png")}
    (out / "show" / "ral.json").unlink()  # as if interrupted: marker missing, last frames missing
    for name in sorted(full)[-3:]:
        (out / "show" / name).unlink()
    (rec,) = prepare_ral([held_video.parent], out, threshold=3.0, progress=False)
    assert rec["resumed_at"] > 0 and not rec["skipped"]
    assert {p.name: p.read_bytes() for p in (out / "show").glob("*.png")} == full
    (again,) = prepare_ral([held_video], out, threshold=3.0, progress=False)
    assert again["skipped"] and json.loads((out / "show" / "ral.json").read_text())["kept"] == len(full)
    with pytest.raises(ValueError, match=r"threshold=3\.0.*another --out"):
        prepare_ral([held_video], out, threshold=5.0, progress=False)


def test_errors(tmp_path, held_video):
    with pytest.raises(FileNotFoundError, match=r"prepare_ral: .*nope\.mp4"):
        prepare_ral([tmp_path / "nope.mp4"], tmp_path / "o", progress=False)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match="not a video file"):
        prepare_ral([tmp_path / "notes.txt"], tmp_path / "o", progress=False)
    bad = tmp_path / "broken.mkv"
    bad.write_bytes(b"\x1a\x45\xdf\xa3" + bytes(3000))
    with pytest.raises(VideoError, match=r"broken\.mkv"):
        prepare_ral([bad], tmp_path / "o", progress=False)
    recs = prepare_ral([bad, held_video], tmp_path / "o", threshold=3.0, skip_bad=True, progress=False)
    assert "error" in recs[0] and recs[1]["kept"] > 5
    with pytest.raises(ValueError, match="frame_mad: shapes differ"):
        frame_mad(np.zeros((2, 2, 3), np.uint8), np.zeros((2, 3, 3), np.uint8))


def test_cli_prepare_ral(tmp_path, held_video):
    from vqdsr_core.cli import main

    out = tmp_path / "corpus"
    assert main(["prepare-ral", str(held_video), "--out", str(out), "--threshold", "3", "--max-frames", "5"]) == 0
    assert len(list((out / "show").glob("*.png"))) == 5
    assert main(["prepare-ral", str(tmp_path / "missing.mp4"), "--out", str(out)]) == 2
