"""SequentialUpscaler: frame-by-frame stepping equals the sequence forward; padding, tiling, resets, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vqdsr_core.inference import (
    CELL_RECEPTIVE_RADIUS,
    SequentialUpscaler,
    luma_difference,
    tile_windows,
    upscale_frames,
)
from vqdsr_core.models.vsr import RecurrentVSRNet
from vqdsr_core.weights import load_model, save_weights


def tiny(feedback: bool = False, seed: int = 0) -> RecurrentVSRNet:
    torch.manual_seed(seed)
    return RecurrentVSRNet(num_feat=8, num_block=(2, 1, 1), feedback=feedback)


@pytest.mark.parametrize("feedback", [False, True])
def test_steps_match_sequence_forward_with_padding(cartoon_tensor, feedback):
    clip = cartoon_tensor(5, 22, 30)  # not multiples of 4: padded then cropped
    model = tiny(feedback)
    with torch.no_grad():
        ref = model(clip[None])[0].clamp(0, 1)
    up = SequentialUpscaler(model)
    outs = upscale_frames(up, list(clip))
    assert outs[0].shape == (3, 88, 120)
    got = torch.stack(outs)
    assert torch.allclose(got, ref, atol=1e-5), float((got - ref).abs().max())


def test_state_is_used_and_reset_restores_a_fresh_start(cartoon_tensor):
    clip = list(cartoon_tensor(4, 16, 16))
    up = SequentialUpscaler(tiny())
    first = upscale_frames(up, clip)
    # stepping frame 2 again without a reset continues from a non-zero state: a different result
    again = up.step(clip[1], clip[2], clip[3])[0]
    assert not torch.equal(again, first[2])
    up.reset()
    assert torch.equal(up.step(clip[0], clip[0], clip[1])[0], first[0])


def test_cuts_reset_and_replace_the_neighbour(cartoon_tensor):
    a, b = list(cartoon_tensor(3, 16, 16, seed=1)), list(cartoon_tensor(3, 16, 16, seed=2))
    up = SequentialUpscaler(tiny())
    joined = upscale_frames(up, a + b, cuts=[3])
    alone = upscale_frames(up, b)
    for x, y in zip(joined[3:], alone):
        assert torch.equal(x, y)
    assert not torch.equal(upscale_frames(up, a + b)[3], alone[0])


def test_prepare_clamps_pads_and_reuses_buffers():
    up = SequentialUpscaler(tiny())
    planes = [np.full((5, 6), v, np.float32) for v in (-0.5, 0.5, 2.0)]
    out = up.prepare(planes)
    assert out.shape == (1, 3, 8, 8)
    assert out[0, :, 0, 0].tolist() == [0.0, 0.5, 1.0]
    assert torch.equal(out[..., 7, 7], out[..., 4, 5])  # replicate padding
    again = up.prepare(planes, out=out)
    assert again.data_ptr() == out.data_ptr()
    with pytest.raises(ValueError, match="expected 6x5"):
        up.prepare(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="3 planes"):
        up.prepare(planes[:2])


def test_tile_windows_cover_with_equal_aligned_windows():
    wins = tile_windows(40, 12, 8)
    assert [w[:2] for w in wins] == [(0, 12), (12, 24), (24, 36), (36, 40)]
    assert {w[3] - w[2] for w in wins} == {28}
    for c0, c1, w0, w1 in wins:
        assert w0 <= c0 < c1 <= w1 and w0 % 4 == 0
    assert tile_windows(8, 16, 8) == [(0, 8, 0, 8)]


def test_tiling_with_enough_overlap_matches_the_full_frame(cartoon_tensor):
    clip = list(cartoon_tensor(2, 8, 76))  # wide and flat: windows (12 + 2 * 24 px) narrower than the frame
    torch.manual_seed(0)
    model = RecurrentVSRNet(num_feat=8)  # default block counts: the receptive field the pad must cover
    full = upscale_frames(SequentialUpscaler(model), clip)
    tiled = upscale_frames(SequentialUpscaler(model, tile=(12, 8), tile_pad=CELL_RECEPTIVE_RADIUS), clip)
    short = upscale_frames(SequentialUpscaler(model, tile=(12, 8), tile_pad=4), clip)
    for f, t in zip(full, tiled):
        assert float((f - t).abs().max()) < 1e-4
    assert max(float((f - s).abs().max()) for f, s in zip(full, short)) > 1e-3


def test_from_weights_and_errors(tmp_path):
    path = save_weights(tmp_path / "w.safetensors", tiny(True), arch="animesr_vsr", config=_tiny_config())
    up = SequentialUpscaler.from_weights(path, device="cpu", precision="fp32")
    assert up.feedback and up.dtype == torch.float32 and len(up.weights_sha256) == 64
    with pytest.raises(ValueError, match="tile must be"):
        SequentialUpscaler(tiny(), tile=(2, 8))
    with pytest.raises(ValueError, match="fp16 is not supported on CPU"):
        SequentialUpscaler.from_weights(path, device="cpu", precision="fp16")


def _tiny_config() -> dict:
    return {"num_feat": 8, "num_block": [2, 1, 1]}


def test_luma_difference():
    a = torch.zeros(3, 4, 4)
    assert luma_difference(a, a) == 0.0
    assert luma_difference(a, torch.ones(3, 4, 4)) == pytest.approx(1.0, abs=1e-6)
    g = torch.zeros(3, 4, 4)
    g[1] = 1
    assert luma_difference(a, g) == pytest.approx(0.7152, abs=1e-6)


def test_cli_upscale_file_to_file(tmp_path, cartoon):
    import av
    from test_plugin_support import make_h264

    from vqdsr_core.cli import main

    src = make_h264(tmp_path / "in.mp4", cartoon(8, 24, 32, seed=2))
    weights = save_weights(tmp_path / "w.safetensors", tiny(), arch="vqdsr_vsr", config=_tiny_config())
    out = tmp_path / "out" / "up.mkv"
    assert main(["upscale", str(src), str(out), "--weights", str(weights), "--max-frames", "6"]) == 0
    with av.open(str(out)) as c:
        got = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(got) == 6 and got[0].shape == (96, 128, 3)
    with av.open(str(src)) as c:
        lr = [torch.from_numpy(f.to_ndarray(format="rgb24")).permute(2, 0, 1).float() / 255 for f in c.decode(video=0)]
    ref = upscale_frames(SequentialUpscaler(load_model(weights)[0]), lr[:6])
    g = torch.from_numpy(got[5]).permute(2, 0, 1).float() / 255

    def psnr(a, b):
        return float(-10 * torch.log10(((a - b) ** 2).mean()))

    # the same pictures through a 4:2:0 H.264 encode (the random net's output is full of chroma detail)
    assert psnr(g, ref[5]) > 24 and psnr(g, ref[5]) > psnr(g, ref[0]) + 3, (psnr(g, ref[5]), psnr(g, ref[0]))
    assert sorted(p.name for p in out.parent.iterdir()) == ["up.mkv"]  # no temp file left
    assert main(["upscale", str(src), str(tmp_path / "x.mkv"), "--weights", str(tmp_path / "none")]) == 2
    assert not (tmp_path / "x.mkv").exists()


def test_cpu_malloc_tuning_is_accepted_by_glibc():
    from vqdsr_core.inference import tune_cpu_malloc

    assert tune_cpu_malloc() is True  # this machine runs glibc: mallopt accepted both thresholds


def test_compiled_cell_matches_eager(cartoon_tensor):
    import shutil

    if not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        pytest.skip("no C++ compiler: compile=True runs eager here (tested below)")
    clip = cartoon_tensor(3, 16, 20, seed=3)
    eager = SequentialUpscaler(tiny().eval(), device=torch.device("cpu"), dtype=torch.float32)
    fast = SequentialUpscaler(tiny().eval(), device=torch.device("cpu"), dtype=torch.float32, compile=True)
    assert fast.cell_fn is not fast.model.cell
    for t in range(3):
        a = eager.step(clip[max(t - 1, 0)], clip[t], clip[min(t + 1, 2)])
        b = fast.step(clip[max(t - 1, 0)], clip[t], clip[min(t + 1, 2)])
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4)


def test_compile_without_a_compiler_runs_eager(monkeypatch):
    import vqdsr_core.inference as inference

    monkeypatch.setattr(inference.shutil, "which", lambda name: None)
    up = SequentialUpscaler(tiny().eval(), device=torch.device("cpu"), dtype=torch.float32, compile=True)
    assert up.cell_fn == up.model.cell
