"""ClipDataset / FrameFolderDataset: shapes, seeded determinism, clip-consistent augmentation, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vqdsr_core.data.clips import ClipDataset, FrameFolderDataset, list_frame_folders, save_png_atomic


def write_clip(folder, frames):
    for i, f in enumerate(frames):
        save_png_atomic(f, folder / f"{i:08d}.png", compress_level=0)


def ramp_clip(n: int, h: int = 40, w: int = 48, seed: int = 0) -> np.ndarray:
    """A fixed noise texture; frame i = texture // 4 + 6 * i, so the frame number survives any crop/flip."""
    tex = np.random.default_rng(seed).integers(0, 256, (h, w, 3)) // 4
    return np.stack([tex + 6 * i for i in range(n)]).astype(np.uint8)


@pytest.fixture
def root(tmp_path, cartoon):
    write_clip(tmp_path / "show_a" / "clip1", cartoon(20, 40, 48, seed=1))
    write_clip(tmp_path / "show_b", cartoon(12, 40, 48, seed=2))
    return tmp_path


def test_listing_and_shapes(root):
    assert [p.relative_to(root).as_posix() for p in list_frame_folders(root)] == ["show_a/clip1", "show_b"]
    ds = ClipDataset(root, num_frame=5, crop=32, seed=0)
    assert len(ds) == 32  # one item per frame of every clip
    for i in (0, 19, 20, 31):
        item = ds[i]
        hr = item["hr"]
        assert hr.shape == (5, 3, 32, 32) and hr.dtype == torch.float32
        assert 0 <= hr.min() and hr.max() <= 1 and hr.std() > 0.05
        assert item["key"].startswith(f"{root.name}/show_a/clip1/" if i < 20 else f"{root.name}/show_b/")
    whole = ClipDataset(root, num_frame=3, crop=None, transpose=False, seed=0)[0]["hr"]
    assert whole.shape == (3, 3, 40, 48)


def test_determinism_per_seed_and_epoch(root):
    a, b = ClipDataset(root, num_frame=5, crop=24, seed=7), ClipDataset(root, num_frame=5, crop=24, seed=7)
    order = [9, 3, 25, 3]
    out_a = [a[i] for i in order]
    out_b = [b[i] for i in reversed(order)][::-1]  # other access order, other instance
    for x, y in zip(out_a, out_b):
        assert x["key"] == y["key"] and torch.equal(x["hr"], y["hr"])
    c = ClipDataset(root, num_frame=5, crop=24, seed=8)
    b.set_epoch(1)
    for other in (c, b):
        assert any(not torch.equal(a[i]["hr"], other[i]["hr"]) for i in range(10))


def test_augmentation_is_the_same_for_every_frame(tmp_path):
    clip = ramp_clip(18)
    write_clip(tmp_path / "ramp", clip)
    ds = ClipDataset(tmp_path, num_frame=6, crop=16, intervals=(1, 2, 3), seed=3)
    tex = clip[0].astype(np.int16)
    seen_steps, transforms = set(), set()
    for i in range(18):
        hr = (ds[i]["hr"] * 255).round().to(torch.int16).numpy().transpose(0, 2, 3, 1)  # (N, h, w, 3)
        base = hr - hr[:, :1, :1, :1] + hr[0, 0, 0, 0]  # remove each frame's offset
        assert (base == base[0]).all(), "frames of one item got different crops or flips"
        steps = np.diff(hr[:, 0, 0, 0]) // 6
        assert len(set(steps.tolist())) == 1 and abs(int(steps[0])) in (1, 2, 3)  # one interval, maybe reversed
        seen_steps.add(int(steps[0]))
        windows = np.lib.stride_tricks.sliding_window_view(tex, (16, 16, 3))[:, :, 0]  # every 16x16 crop
        hits = [  # which of the 8 flips/transposes of some crop is frame 0 (up to its +6*i offset)
            k for k in range(8) if _const(_undo(hr[0], k) - windows)
        ]
        assert hits, "frame is not a flipped/transposed crop of the source"
        transforms.update(hits)
    assert any(s < 0 for s in seen_steps) and any(s > 0 for s in seen_steps)  # random reverse happens
    assert len(transforms) >= 3  # flips/transposes happen


def _undo(img: np.ndarray, k: int) -> np.ndarray:
    """Apply transform k of (hflip, vflip, transpose) bits; each is its own inverse up to order."""
    x = img
    if k & 4:
        x = np.swapaxes(x, 0, 1)
    if k & 2:
        x = x[::-1]
    if k & 1:
        x = x[:, ::-1]
    return x


def test_video_clips(tmp_path, cartoon, monkeypatch):
    import av

    from vqdsr_core.data import clips as clips_mod

    for k in range(3):
        with av.open(str(tmp_path / f"v{k}.mkv"), "w") as c:
            s = c.add_stream("libx264", rate=24)
            s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
            for f in cartoon(10, 48, 64, seed=4 + k):
                c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
            c.mux(s.encode())
    one = ClipDataset(tmp_path / "v0.mkv", num_frame=4, crop=32, seed=1)
    assert len(one) == 10 and one[9]["hr"].shape == (4, 3, 32, 32)
    monkeypatch.setattr(clips_mod, "MAX_OPEN_VIDEOS", 1)
    ds = ClipDataset(
        tmp_path, num_frame=4, crop=None, intervals=(1,), seed=1, random_reverse=False, flips=False, transpose=False
    )
    assert len(ds) == 30 and all(c.reader._source is None for c in ds.clips)  # no decoder held after listing
    for i in (25, 3, 14, 22):  # alternate between videos: decoders are closed and reopened
        item = ds[i]
        k, start = i // 10, int(item["key"].rsplit("/", 1)[1].split("+")[0])
        assert item["key"].startswith(f"{tmp_path.name}/v{k}.mkv/") and start == min(i % 10, 6)
        expect = cartoon(10, 48, 64, seed=4 + k)[start : start + 4]
        got = (item["hr"] * 255).round().byte().permute(0, 2, 3, 1).numpy()
        assert np.abs(got.astype(int) - expect).mean() < 8  # the right frames of the right video (H.264 loss)
        assert sum(c.reader._source is not None for c in ds.clips) == 1


def test_errors(tmp_path, cartoon):
    with pytest.raises(FileNotFoundError, match=r"ClipDataset.*does not exist"):
        ClipDataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="ClipDataset: no clips"):
        ClipDataset(tmp_path / "empty")
    write_clip(tmp_path / "short" / "c", cartoon(4, 40, 48))
    with pytest.raises(ValueError, match="clip 'short/c' has 4 frames; num_frame=5"):
        ClipDataset(tmp_path / "short", num_frame=5, crop=16)
    with pytest.raises(ValueError, match=r"41x41 crop"):
        ClipDataset(tmp_path / "short", num_frame=3, crop=41)
    write_clip(tmp_path / "short" / "long", cartoon(8, 40, 48))
    ds = ClipDataset(tmp_path / "short", num_frame=5, crop=16, skip_short=True)
    assert len(ds) == 8
    with pytest.raises(ValueError, match="num_frame"):
        ClipDataset(tmp_path / "short", num_frame=0)


def test_frame_folder_dataset(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (40, 50, 3)).astype(np.uint8)
    save_png_atomic(img, tmp_path / "f" / "a.png")
    save_png_atomic(img[:20, :20], tmp_path / "f" / "small.png")
    plain = FrameFolderDataset(
        tmp_path, crop=24, scale_prob=0, flips=False, channel_shuffle_prob=0, rgb_shift_prob=0, seed=0
    )
    assert len(plain) == 2 and plain.keys[0].endswith("f/a.png")
    x = (plain[0]["image"] * 255).round().byte().permute(1, 2, 0).numpy()
    assert x.shape == (24, 24, 3)
    assert any(np.array_equal(x, img[y : y + 24, c : c + 24]) for y in range(17) for c in range(27))
    assert plain[1]["image"].shape == (3, 24, 24)  # a 20x20 frame is upscaled to fit the crop
    shuffled = FrameFolderDataset(
        tmp_path, crop=24, scale_prob=0, flips=False, channel_shuffle_prob=1, rgb_shift_prob=0, seed=0
    )
    perms = set()
    for e in range(12):
        shuffled.set_epoch(e)
        y = (shuffled[0]["image"] * 255).round().byte().permute(1, 2, 0).numpy()
        found = [
            (p, a, c)
            for a in range(17)
            for c in range(27)
            for p in _perms()
            if np.array_equal(y, img[a : a + 24, c : c + 24][..., list(p)])
        ]
        assert found, "output is not a channel permutation of a crop"
        perms.add(found[0][0])
    assert len(perms) >= 3
    full = FrameFolderDataset(tmp_path, crop=24, seed=5)
    again = FrameFolderDataset(tmp_path, crop=24, seed=5)
    assert all(torch.equal(full[i]["image"], again[i]["image"]) for i in range(2))
    with pytest.raises(ValueError, match="FrameFolderDataset: no image frames"):
        FrameFolderDataset(_empty(tmp_path))


def _perms():
    return [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]


def _empty(tmp_path):
    (tmp_path / "none").mkdir(exist_ok=True)
    return tmp_path / "none"


def _const(d: np.ndarray) -> bool:
    """True if, for some crop position, the difference is one constant multiple of 6."""
    first = d[..., :1, :1, :1]
    return bool((((d == first).all(axis=(-3, -2, -1))) & (first[..., 0, 0, 0] % 6 == 0)).any())


def test_spawned_dataloader_worker_reproduces_direct_indexing(tmp_path, cartoon):
    import av
    from torch.utils.data import DataLoader

    with av.open(str(tmp_path / "v.mkv"), "w") as c:
        s = c.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for f in cartoon(12, 48, 64, seed=9):
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode())
    write_clip(tmp_path / "frames", cartoon(12, 48, 64, seed=10))
    ds = ClipDataset(tmp_path, num_frame=4, crop=32, seed=5)
    ds.set_epoch(2)
    direct = [ds[i] for i in range(len(ds))]
    loader = DataLoader(ds, batch_size=4, num_workers=1, multiprocessing_context="spawn")
    batches = list(loader)
    assert sum(len(b["key"]) for b in batches) == 24
    for k, batch in enumerate(batches):
        for j in range(len(batch["key"])):
            assert batch["key"][j] == direct[4 * k + j]["key"]
            assert torch.equal(batch["hr"][j], direct[4 * k + j]["hr"])
