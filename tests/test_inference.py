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


def tiny(feedback: bool = False, seed: int = 0, prime_steps: int = 0) -> RecurrentVSRNet:
    torch.manual_seed(seed)
    return RecurrentVSRNet(num_feat=8, num_block=(2, 1, 1), feedback=feedback, prime_steps=prime_steps)


@pytest.mark.parametrize(("feedback", "prime"), [(False, 0), (True, 0), (False, 2), (True, 3)])
def test_steps_match_sequence_forward_with_padding(cartoon_tensor, feedback, prime):
    clip = cartoon_tensor(5, 22, 30)  # not multiples of 4: padded then cropped
    model = tiny(feedback, prime_steps=prime)
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


def test_priming_starts_from_a_state_that_has_seen_the_frame(cartoon_tensor):
    clip = list(cartoon_tensor(4, 16, 16))
    plain, primed = tiny(), tiny(prime_steps=2)
    first = upscale_frames(SequentialUpscaler(primed), clip)
    # the primed first frame is the plain model's third output on the first window repeated
    up = SequentialUpscaler(plain)
    for _ in range(2):
        up.step(clip[0], clip[0], clip[1])
    torch.testing.assert_close(up.step(clip[0], clip[0], clip[1]), first[0][None], atol=1e-6, rtol=0)
    assert not torch.equal(upscale_frames(SequentialUpscaler(plain), clip)[0], first[0])
    # and a primed start is the same after a reset, at a cut and through the weight file
    up = SequentialUpscaler(primed)
    assert torch.equal(upscale_frames(up, clip[:1] + clip, cuts=[1])[1], first[0])


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


@pytest.mark.parametrize(("flag", "want"), [([], None), (["--single-frame"], True), (["--no-single-frame"], False)])
def test_cli_upscale_passes_single_frame(tmp_path, cartoon, monkeypatch, flag, want):
    from test_plugin_support import make_h264

    from vqdsr_core.cli import main

    src = make_h264(tmp_path / "in.mp4", cartoon(2, 16, 16, seed=3))
    weights = save_weights(tmp_path / "w.safetensors", tiny(), arch="vqdsr_vsr", config=_tiny_config())
    seen = []
    real = SequentialUpscaler.from_weights.__func__

    def spy(cls, *args, **kwargs):
        seen.append(kwargs.get("single_frame", "missing"))
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(SequentialUpscaler, "from_weights", classmethod(spy))
    assert main(["upscale", str(src), str(tmp_path / "o.mkv"), "--weights", str(weights), "--no-progress", *flag]) == 0
    assert seen == [want]


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


def _decode(path):
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_cli_upscale_matrix_size_and_progress(tmp_path, cartoon, capsys):
    """--matrix is needed for untagged YUV (as in the filter) and overrides a tag; --scale/--width size the output;
    a progress bar with the total goes to stderr."""
    from test_plugin_support import make_h264

    from vqdsr_core.cli import main

    frames = cartoon(4, 24, 32, seed=3)
    untagged = make_h264(tmp_path / "u.mp4", frames, tagged=False)
    weights = save_weights(tmp_path / "w.safetensors", tiny(), arch="vqdsr_vsr", config=_tiny_config())
    w = ["--weights", str(weights)]
    assert main(["upscale", str(untagged), str(tmp_path / "a.mkv"), *w]) == 2
    err = capsys.readouterr().err
    assert "vqdsr upscale: error: the YUV matrix of" in err and "pass --matrix" in err
    assert not (tmp_path / "a.mkv").exists()
    assert main(["upscale", str(untagged), str(tmp_path / "a.mkv"), *w, "--matrix", "601"]) == 0
    assert "4/4" in capsys.readouterr().err  # tqdm: done/total
    got601 = _decode(tmp_path / "a.mkv")
    assert len(got601) == 4 and got601[0].shape == (96, 128, 3)
    assert main(["upscale", str(untagged), str(tmp_path / "b.mkv"), *w, "--matrix", "709", "--no-progress"]) == 0
    assert "4/4" not in capsys.readouterr().err
    # swscale's untagged default is BT.601: --matrix 709 must change the colours
    assert np.abs(_decode(tmp_path / "b.mkv")[1].astype(int) - got601[1]).mean() > 1
    assert main(["upscale", str(untagged), str(tmp_path / "c.mp4"), *w, "--matrix", "6", "--scale", "2"]) == 0
    assert _decode(tmp_path / "c.mp4")[0].shape == (48, 64, 3)
    assert main(["upscale", str(untagged), str(tmp_path / "d.mp4"), *w, "--matrix", "601", "--width", "80"]) == 0
    assert _decode(tmp_path / "d.mp4")[0].shape == (60, 80, 3)


def test_cli_upscale_errors_are_clear_and_early(tmp_path, cartoon, capsys):
    """Checked before the model loads, each message names the file, once prefixed, no errno or internal names."""
    from test_plugin_support import make_h264

    from vqdsr_core.cli import main

    src = make_h264(tmp_path / "in.mp4", cartoon(2, 16, 16, seed=1))
    text = tmp_path / "notes.txt"
    text.write_text("not a video\n")
    missing = str(tmp_path / "missing.safetensors")  # the suffix check must come first

    def error(*argv: str) -> str:
        assert main(["upscale", *argv]) == 2
        return capsys.readouterr().err.strip()

    msg = error(str(src), str(tmp_path / "out.avi"), "--weights", missing)
    assert msg == f"vqdsr upscale: error: output {str(tmp_path / 'out.avi')!r}: unknown video suffix '.avi'; use " \
        ".mkv, .mp4, .mov, .264, .hevc"  # fmt: skip
    assert "needs --codec libx265" in error(str(src), str(tmp_path / "o.hevc"), "--weights", missing)
    msg = error(str(text), str(tmp_path / "o.mkv"))
    assert msg.startswith(f"vqdsr upscale: error: cannot read video {str(text)!r}: Invalid data") and "Errno" not in msg
    assert "is a folder" in error(str(src), str(tmp_path / "o.mkv"), "--weights", str(tmp_path))
    assert error(str(src), str(tmp_path / "o.mkv"), "--device", "tpu").count("vqdsr upscale:") == 1
    assert "scale must be a number in (0, 4]" in error(str(src), str(tmp_path / "o.mkv"), "--scale", "8")
    assert "is a folder" in error(str(tmp_path), str(tmp_path / "o.mkv"))
    assert not list(tmp_path.glob("o.*")) and not list(tmp_path.glob(".o*"))


def test_compiled_cell_compiles_once_whatever_the_aliasing(cartoon_tensor, monkeypatch):
    """The filter passes frame t as its own neighbour at the ends and at cuts (prev is cur, nxt is cur), and
    prepares its inputs outside ``step``: dynamo would compile one graph per aliasing pattern and per kind of
    tensor (inference or not) -- three on a plain clip, each tens of seconds under vspipe."""
    import torch._dynamo.testing

    import vqdsr_core.inference as inference

    counter = torch._dynamo.testing.CompileCounter()  # counts dynamo's graphs, runs them eagerly (no C++ build)
    monkeypatch.setattr(inference.torch, "compile", lambda fn, **kw: torch._dynamo.optimize(counter)(fn))
    monkeypatch.setattr(inference.shutil, "which", lambda name: "/usr/bin/" + name)
    torch._dynamo.reset()
    clip = cartoon_tensor(3, 16, 20, seed=5)
    up = SequentialUpscaler(tiny(seed=3).eval(), device=torch.device("cpu"), dtype=torch.float32, compile=True)
    eager = SequentialUpscaler(tiny(seed=3).eval(), device=torch.device("cpu"), dtype=torch.float32)
    bufs = [up.prepare(x) for x in clip]  # as the filter does: outside step()
    for prev, cur, nxt in ((0, 0, 1), (0, 1, 2), (1, 2, 2)):  # the filter's calls on a 3-frame clip
        got = up.step(bufs[prev], bufs[cur], bufs[nxt], prepared=True)
        torch.testing.assert_close(got, eager.step(clip[prev], clip[cur], clip[nxt]), atol=1e-5, rtol=1e-4)
    assert counter.frame_count == 1


def test_priming_is_kept_by_weight_files_and_calms_a_cold_start(tmp_path, cartoon_tensor):
    from vqdsr_core.weights import resolve_weights

    model, info = load_model(resolve_weights(None, "vsr"), arch="vqdsr_vsr")  # the bundled default
    cfg = {**info.config, "prime_steps": 3, "single_frame": False}  # priming is for recurrent runs
    save_weights(tmp_path / "primed.safetensors", model, arch="vqdsr_vsr", config=cfg)
    primed = load_model(tmp_path / "primed.safetensors", arch="vqdsr_vsr")[0]
    assert primed.prime_steps == 3 and model.prime_steps == info.config.get("prime_steps", 0)
    still = [cartoon_tensor(1, 24, 32)[0]] * 4  # a still shot: every change of the output is flicker

    def first_change(m) -> float:
        out = upscale_frames(SequentialUpscaler(m), still)
        return float((out[1] - out[0]).abs().mean())

    plain = RecurrentVSRNet(**{k: v for k, v in info.config.items() if k not in ("prime_steps", "single_frame")})
    plain.load_state_dict(model.state_dict())
    assert first_change(primed) < 0.25 * first_change(plain)


@pytest.mark.parametrize("feedback", [False, True])
def test_single_frame_makes_every_frame_alone_in_any_order(cartoon_tensor, feedback):
    """single_frame: each output is the cell on (LR_t, LR_t, LR_t) from a zero state, whatever came before."""
    clip = list(cartoon_tensor(4, 18, 22))
    model = RecurrentVSRNet(num_feat=8, num_block=(2, 1, 1), feedback=feedback, prime_steps=2, single_frame=True)
    torch.manual_seed(0)
    for p in model.parameters():  # a non-zero state would show in the output
        p.data.normal_(0, 0.1)
    up = SequentialUpscaler(model)
    alone = []
    for x in clip:
        up.reset()
        padded = up.prepare(x)
        state, prev_sr = model.init_state(padded)
        with torch.no_grad():
            sr = model.cell(padded, padded, padded, state, prev_sr)[0]
        alone.append(sr[0, :, :72, :88].clamp(0, 1))
    linear = upscale_frames(up, clip)
    shuffled = {t: up.step(clip[(t + 2) % 4], clip[t], clip[(t + 3) % 4])[0] for t in (3, 1, 0, 2)}
    with torch.no_grad():
        seq = model(torch.stack(clip)[None])[0].clamp(0, 1)
    for t in range(4):
        torch.testing.assert_close(linear[t], alone[t], atol=1e-5, rtol=0)
        assert torch.equal(shuffled[t], linear[t])  # other neighbours and history change nothing
        torch.testing.assert_close(seq[t], alone[t], atol=1e-5, rtol=0)  # training's forward is the same
    recurrent = SequentialUpscaler(model, single_frame=False)  # the override runs the file recurrently
    assert not torch.allclose(upscale_frames(recurrent, clip)[2], linear[2], atol=1e-3)


def test_single_frame_is_kept_by_weight_files_and_checked(tmp_path):
    model = RecurrentVSRNet(num_feat=8, num_block=(2, 1, 1), single_frame=True)
    cfg = {"num_feat": 8, "num_block": [2, 1, 1], "single_frame": True}
    save_weights(tmp_path / "single.safetensors", model, arch="vqdsr_vsr", config=cfg)
    assert load_model(tmp_path / "single.safetensors", arch="vqdsr_vsr")[0].single_frame is True
    assert SequentialUpscaler.from_weights(tmp_path / "single.safetensors", device="cpu").single_frame is True
    with pytest.raises(ValueError, match="single_frame must be True or False"):
        RecurrentVSRNet(num_feat=8, num_block=(2, 1, 1), single_frame=1)
    with pytest.raises(ValueError, match="Up: single_frame must be True, False or None"):
        SequentialUpscaler(model, single_frame="yes", func="Up")
