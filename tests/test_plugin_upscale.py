"""vsvqdsr.upscale in-process: recurrence under threads and seeks, scene cuts, formats, props, errors, precision."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
import torch
from test_plugin_support import clip_from_frames, psnr, render, tiny_vsr_weights, trained_weights

import vsvqdsr
from vqdsr_core.inference import SequentialUpscaler, upscale_frames
from vqdsr_core.weights import load_model
from vsvqdsr.recurrent import _Recurrence

vs = pytest.importorskip("vapoursynth")
core = vs.core


@pytest.fixture(scope="session")
def trained_folder(request, tmp_path_factory):
    """Where the little-trained model lives: pytest's cache folder (trained once per checkout) or, with the cache
    plugin off, a temporary folder for this session."""
    cache = getattr(request.config, "cache", None)
    return cache.mkdir("vsvqdsr_trained_vsr") if cache is not None else tmp_path_factory.mktemp("trained_vsr")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return tiny_vsr_weights(tmp_path_factory.mktemp("w") / "vsr.safetensors")


@pytest.fixture
def threads():
    saved = core.num_threads
    yield
    core.num_threads = saved


def jittery(clip):
    """Upstream frames arrive late, each block of 8 in reverse order (VapourSynth runs this in parallel)."""

    def late(n, f):
        time.sleep((7 - n % 8) * 0.01)
        return f

    return core.std.FrameEval(clip, lambda n: core.std.ModifyFrame(clip, clip, late), clip_src=clip)


def reference(weights, frames, cuts=()):
    """The plain loop: one linear SequentialUpscaler pass over the frames (RGB float, h, w, 3 uint8 input)."""
    model, _ = load_model(weights)
    up = SequentialUpscaler(model)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    return [o.numpy() for o in upscale_frames(up, list(x), cuts=cuts)]


def test_linear_render_is_bit_identical_at_any_thread_count(weights, cartoon, threads, monkeypatch):
    frames = cartoon(20, 24, 32, seed=4)
    calls: list[int] = []
    original = _Recurrence.__call__

    def spy(self, n, f):
        calls.append(n)
        return original(self, n, f)

    monkeypatch.setattr(_Recurrence, "__call__", spy)
    renders = {}
    for t in (1, 8):
        core.num_threads = t
        calls.clear()
        clip = jittery(clip_from_frames(frames))
        renders[t] = render(vsvqdsr.upscale(clip, weights=str(weights), precision="fp32"))
        out_of_order = sum(b < a for a, b in itertools.pairwise(calls))
        if t == 8:
            assert out_of_order > 0, "the 8-thread render never delivered frames out of order; the test is moot"
    ref = reference(weights, frames)
    for a, b, r in zip(renders[1], renders[8], ref):
        assert np.array_equal(a, b)
        assert np.abs(a - r).max() < 1e-4  # the plain loop (torch on another thread: float rounding may differ)


def test_out_of_order_requests_give_the_linear_result(weights, cartoon):
    frames = cartoon(12, 16, 16, seed=9)
    linear = render(vsvqdsr.upscale(clip_from_frames(frames), weights=str(weights), precision="fp32"))
    order = [1, 0, 3, 2, 6, 4, 5, 11, 7, 8, 10, 9]  # swaps and forward gaps: cache hits and catch-ups
    clip = vsvqdsr.upscale(clip_from_frames(frames), weights=str(weights), precision="fp32")
    for a, b in zip(render(clip, order), linear):
        assert np.array_equal(a, b)


def test_seek_warms_up_and_strict_refuses(weights, cartoon):
    frames = cartoon(14, 16, 16, seed=5)
    clip = clip_from_frames(frames)
    linear = render(vsvqdsr.upscale(clip, weights=str(weights), precision="fp32", scene_change=False))
    out = vsvqdsr.upscale(clip, weights=str(weights), precision="fp32", warmup=4, max_gap=1, scene_change=False)
    # frame 3 is within warmup of the start: the warm-up starts at frame 0, which is exact
    assert np.array_equal(render(out, [3])[0], linear[3])
    # a jump from 3 to 12 (> max_gap) resets and warms up on 8..11: close to the linear pass, not equal
    got = render(out, [12])[0]
    assert psnr(got, linear[12]) > 40
    cold = vsvqdsr.upscale(clip, weights=str(weights), precision="fp32", warmup=0, max_gap=1, scene_change=False)
    assert psnr(render(cold, [3, 12])[1], linear[12]) < psnr(got, linear[12])
    strict = vsvqdsr.upscale(clip, weights=str(weights), strict=True, cache_frames=2)
    strict.get_frame(5)  # forward from the start: caught up exactly
    with pytest.raises(vs.Error, match=r"vsvqdsr\.upscale: strict=True and frame 2 was requested after frame 5"):
        strict.get_frame(2)


@pytest.mark.slow
def test_seek_tolerance_with_a_trained_model(cartoon, trained_folder):
    """Seek vs linear after a 16-frame warm-up, on a model trained a little (see the README)."""
    path = trained_weights(trained_folder)
    frames = cartoon(30, 16, 16, seed=6, motion=2)
    linear = reference(path, frames)
    clip = clip_from_frames(frames)
    out = vsvqdsr.upscale(clip, weights=str(path), precision="fp32", warmup=16, max_gap=1, scene_change=False)
    got = render(out, [29, 24, 28])
    assert min(psnr(g, linear[n]) for g, n in zip(got, [24, 28, 29])) > 45


def test_single_frame_runs_every_frame_alone_in_any_order(weights, cartoon, tmp_path):
    """single_frame (the file's config or the option): frame n from LR n alone, exact in any order, no warm-up."""
    from vqdsr_core.weights import read_weights, save_weights

    frames = cartoon(8, 16, 16, seed=4, motion=2)
    state, info = read_weights(weights)
    single = save_weights(tmp_path / "single.safetensors", state, arch=info.arch,
                          config={**info.config, "single_frame": True})  # fmt: skip
    model, _ = load_model(single)
    up = SequentialUpscaler(model)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    alone = [up.step(f, f, f)[0].numpy() for f in x]
    clip = clip_from_frames(frames)
    by_file = vsvqdsr.upscale(clip, weights=str(single), precision="fp32")
    by_option = vsvqdsr.upscale(clip, weights=str(weights), precision="fp32", single_frame=True)
    order = [7, 2, 5, 0, 3, 6, 1, 4]
    for out in (by_file, by_option):
        for n, got in enumerate(render(out, order)):  # requested in that order, returned by frame number
            assert np.abs(got - alone[n]).max() <= 0.5 / 255, n
    linear = render(vsvqdsr.upscale(clip, weights=str(single), precision="fp32", single_frame=False))
    assert psnr(linear[5], render(by_file, [5])[0]) < 60  # the override runs the same file recurrently
    with pytest.raises(vs.Error, match=r"vsvqdsr\.upscale: single_frame must be None, True or False, got 1"):
        vsvqdsr.upscale(clip, weights=str(weights), single_frame=1)


def test_scene_cut_resets_state(weights, cartoon):
    a, b = cartoon(6, 16, 24, seed=1), cartoon(6, 16, 24, seed=2)
    joined = clip_from_frames(np.concatenate([a, b]))
    out = render(vsvqdsr.upscale(joined, weights=str(weights), precision="fp32"))
    fresh = render(vsvqdsr.upscale(clip_from_frames(b), weights=str(weights), precision="fp32"))
    for x, y in zip(out[6:], fresh):
        assert np.array_equal(x, y)
    off = render(vsvqdsr.upscale(joined, weights=str(weights), precision="fp32", scene_change=False))
    assert np.abs(off[6] - fresh[0]).max() > 1e-4
    # _SceneChangePrev overrides detection: a cut where nothing changes, none where the picture does
    mark = joined.std.SetFrameProps(_SceneChangePrev=0)
    mark = core.std.Splice([mark[:3], mark[3:].std.SetFrameProps(_SceneChangePrev=1)[:1], mark[4:]])
    marked = render(vsvqdsr.upscale(mark, weights=str(weights), precision="fp32"))
    want = render(vsvqdsr.upscale(joined[3:], weights=str(weights), precision="fp32", scene_change=False))
    assert np.array_equal(marked[3], want[0])  # reset at 3 (prop says cut)
    assert not np.array_equal(off[3], want[0])
    assert np.array_equal(marked[6], want[3])  # no reset at 6 (prop says no cut)
    assert not np.array_equal(out[6], want[3])


def test_formats_and_props(weights, cartoon):
    frames = cartoon(3, 16, 24, seed=3)
    rgbs = clip_from_frames(frames).std.SetFrameProps(Name="x", _SARNum=4, _SARDen=3, _SceneChangeNext=0)
    out = vsvqdsr.upscale(rgbs, weights=str(weights))
    assert (out.format.id, out.width, out.height, out.num_frames) == (vs.RGBS, 96, 64, 3)
    props = out.get_frame(1).props
    assert (props["Name"], props["_SARNum"], props["_SARDen"], props["_SceneChangeNext"]) == ("x", 4, 3, 0)
    assert "VSVQDSR_SCDiff" not in props
    assert (props["_DurationNum"], props["_DurationDen"]) == (1, 24)

    yuv = core.resize.Bicubic(rgbs, format=vs.YUV420P10, matrix_s="709", range_s="limited")
    yuv = yuv.std.SetFrameProps(_ChromaLocation=2)
    up = vsvqdsr.upscale(yuv, weights=str(weights))
    assert (up.format.id, up.width, up.height) == (vs.YUV420P10, 96, 64)
    p = up.get_frame(0).props
    assert (p["_Matrix"], p["_Range"], p["_ChromaLocation"], p["Name"]) == (1, 0, 2, "x")
    back = core.resize.Bicubic(up, format=vs.RGBS, matrix_in_s="709")
    same = vsvqdsr.upscale(core.resize.Bicubic(yuv, format=vs.RGBS), weights=str(weights))
    same = core.resize.Bicubic(same, format=vs.YUV420P10, matrix_s="709", chromaloc_s="top_left")
    same = core.resize.Bicubic(same, format=vs.RGBS)
    assert psnr(render(back)[0], render(same)[0]) > 60  # the filter = convert, upscale, convert back
    direct = render(out)[0]

    rgbh = vsvqdsr.upscale(clip_from_frames(frames, vs.RGBH), weights=str(weights))
    assert rgbh.format.id == vs.RGBH and psnr(render(rgbh)[0], direct) > 45
    rgb24 = vsvqdsr.upscale(clip_from_frames(frames, vs.RGB24), weights=str(weights))
    assert rgb24.format.id == vs.RGB24
    assert np.abs(render(rgb24)[0] - np.round(direct * 255)).max() <= 1

    no_matrix = core.resize.Bicubic(rgbs, format=vs.YUV444P8, matrix_s="709").std.SetFrameProps(_Matrix=2)
    with pytest.raises(vs.Error, match=r"vsvqdsr\.upscale: the clip's YUV matrix is unknown \(_Matrix=2"):
        vsvqdsr.upscale(no_matrix, weights=str(weights))
    assert vsvqdsr.upscale(no_matrix, weights=str(weights), matrix="709").get_frame(0).props["_Matrix"] == 1


def test_feedback_variant_runs(tmp_path, cartoon):
    w = tiny_vsr_weights(tmp_path / "fb.safetensors", feedback=True)
    frames = cartoon(4, 16, 16, seed=7)
    out = render(vsvqdsr.upscale(clip_from_frames(frames), weights=str(w), precision="fp32", scene_change=False))
    ref = reference(w, frames)
    assert max(np.abs(a - b).max() for a, b in zip(out, ref)) < 1e-4


def test_bf16_within_half_a_db_of_fp32(cartoon, trained_folder):
    path = trained_weights(trained_folder)
    hr = cartoon(4, 64, 64, seed=8)
    lr = hr.reshape(4, 16, 4, 16, 4, 3).mean(axis=(2, 4)).round().astype(np.uint8)
    clip = clip_from_frames(lr)
    target = hr.transpose(0, 3, 1, 2) / 255
    scores = {}
    for prec in ("fp32", "bf16"):
        outs = render(vsvqdsr.upscale(clip, weights=str(path), precision=prec))
        scores[prec] = np.mean([psnr(o, t) for o, t in zip(outs, target)])
    assert abs(scores["fp32"] - scores["bf16"]) < 0.5, scores


@pytest.mark.parametrize(
    ("make", "kwargs", "message"),
    [
        (lambda c: "not a clip", {}, "clip must be a vapoursynth.VideoNode, got str"),
        (lambda c: core.std.Splice([c, c.resize.Point(format=vs.RGB24)], mismatch=True), {}, "variable-format"),
        (lambda c: core.std.Splice([c, c.resize.Point(20, 16)], mismatch=True), {}, "variable-resolution"),
        (lambda c: c.resize.Point(format=vs.GRAY8, matrix_s="709"), {}, "Gray8 is not supported"),
        (lambda c: c.std.Crop(right=c.width - 3, bottom=c.height - 3), {}, "frames are 3x3; at least 4x4"),
        (lambda c: c, {"warmup": -1}, "warmup must be an int >= 0"),
        (lambda c: c, {"tile": (2, 8)}, "tile must be"),
        (lambda c: c, {"precision": "fp64"}, "precision must be one of"),
        (lambda c: c, {"precision": "fp16", "device": "cpu"}, "fp16 is not supported on CPU"),
        (lambda c: c, {"device": "tpu"}, "device"),
        (lambda c: c, {"sc_threshold": -1}, "sc_threshold must be"),
        (lambda c: c, {"matrix": "nope"}, "unknown matrix"),
        (lambda c: c, {"weights": "/nonexistent.safetensors"}, "does not exist"),
        (lambda c: c, {"weights": "/"}, "weight file '/' is a folder; give the .safetensors file in it"),
        (lambda c: c, {"trt": True}, "trt=True needs"),
        (lambda c: c, {"compile": "yes"}, "compile must be True or False"),
    ],
)
def test_bad_input_raises_vs_error(weights, cartoon, make, kwargs, message):
    clip = make(clip_from_frames(cartoon(2, 16, 16)))
    kwargs = {"weights": str(weights), **kwargs}
    if "matrix" in kwargs:
        clip = core.resize.Point(clip, format=vs.YUV444P8, matrix_s="709")
    with pytest.raises(vs.Error, match=r"vsvqdsr\.upscale: .*" + message.replace("(", r"\(")):
        vsvqdsr.upscale(clip, **kwargs)


def test_wrong_architecture_is_refused(tmp_path, cartoon):
    from vqdsr_core.models.srvgg import SRVGGNetCompact
    from vqdsr_core.weights import save_weights

    path = save_weights(tmp_path / "s.safetensors", SRVGGNetCompact(num_conv=1), arch="srvgg_compact", config={})
    with pytest.raises(vs.Error, match=r"vsvqdsr\.upscale: .*holds a 'srvgg_compact' model"):
        vsvqdsr.upscale(clip_from_frames(cartoon(1, 8, 8)), weights=str(path))


def test_cache_keeps_frames_near_the_current_one_after_a_seek(weights, cartoon):
    """After a backward seek, caught-up frames must stay cached (not evicted in favour of stale far frames)."""
    clip = clip_from_frames(cartoon(12, 16, 16, seed=12))
    kw = {"weights": str(weights), "precision": "fp32", "warmup": 1, "max_gap": 4, "cache_frames": 4}
    a = vsvqdsr.upscale(clip, scene_change=False, **kw)
    # 8..11 fill the cache; seek back to 2, jump to 6 (catch-up 3..6), then 3..5 must come from the cache
    got = render(a, [8, 9, 10, 11, 2, 6, 3, 4, 5])
    want = render(vsvqdsr.upscale(clip, scene_change=False, **kw), [8, 9, 10, 11, 2, 3, 4, 5, 6])
    assert all(np.array_equal(x, y) for x, y in zip(got, want))


def test_default_weights_are_the_bundled_model(cartoon):
    """weights=None loads the bundled default model (package data) and upscales."""
    from vqdsr_core.weights import bundled_weights, read_weights

    _, info = read_weights(bundled_weights("vsr"))
    assert info.arch == "vqdsr_vsr"
    out = vsvqdsr.upscale(clip_from_frames(cartoon(2, 16, 20)), precision="fp32")
    assert (out.width, out.height, out.num_frames) == (80, 64, 2)
    frame = np.asarray(out.get_frame(1)[0])
    assert np.isfinite(frame).all() and 0.05 < float(frame.mean()) < 0.95


def test_missing_bundled_model_is_a_clear_vs_error(cartoon, monkeypatch, tmp_path):
    from vqdsr_core import weights

    monkeypatch.setattr(weights, "BUNDLED_DIR", tmp_path)  # an installation without the package data
    with pytest.raises(vs.Error, match=r"vsvqdsr\.upscale: .*no bundled default vsr model"):
        vsvqdsr.upscale(clip_from_frames(cartoon(2, 16, 16)))


@pytest.mark.parametrize(("coded", "tag"), [(6, 1), (1, 6)])
def test_matrix_overrides_a_tagged_clip_both_ways(weights, cartoon, coded, tag):
    """matrix= wins over a wrong _Matrix prop on the way in as on the way back (R81's resize lets the prop win)."""
    from vsvqdsr.frames import to_working_rgb

    rgb = clip_from_frames(cartoon(2, 16, 24, seed=13))
    yuv = core.resize.Bicubic(rgb, format=vs.YUV444P16, matrix=coded)
    mistagged = yuv.std.SetFrameProps(_Matrix=tag)
    name = {1: "709", 6: "601"}[coded]
    work = to_working_rgb(mistagged, "t", matrix=name)
    assert psnr(render(work.rgb)[0], render(rgb)[0]) > 60
    assert np.array_equal(render(work.back(work.rgb))[0], render(yuv)[0])
    got = vsvqdsr.upscale(mistagged, weights=str(weights), precision="fp32", matrix=name)
    want = vsvqdsr.upscale(yuv, weights=str(weights), precision="fp32")
    assert got.get_frame(0).props["_Matrix"] == coded
    assert all(np.array_equal(a, b) for a, b in zip(render(got), render(want)))


def test_output_size_other_than_x4(weights, cartoon):
    """scale= / width= / height=: the x4 result, then Lanczos down; input format and props kept, SAR on a stretch."""
    rgbs = clip_from_frames(cartoon(2, 16, 24, seed=14)).std.SetFrameProps(Name="s", _SARNum=8, _SARDen=9)
    x4 = vsvqdsr.upscale(rgbs, weights=str(weights), precision="fp32")
    x2 = vsvqdsr.upscale(rgbs, weights=str(weights), precision="fp32", scale=2)
    assert (x2.format.id, x2.width, x2.height, x2.num_frames) == (vs.RGBS, 48, 32, 2)
    want = core.resize.Lanczos(x4, 48, 32, filter_param_a=3)
    assert all(np.array_equal(a, b) for a, b in zip(render(x2), render(want)))
    yuv = core.resize.Bicubic(rgbs, format=vs.YUV420P10, matrix_s="709")
    for kwargs, size, sar in (
        ({"scale": 1.5}, (36, 24), (8, 9)),
        ({"width": 50}, (50, 34), (8, 9)),  # height from the aspect ratio, rounded to the 4:2:0 grid
        ({"height": 30}, (46, 30), (8, 9)),
        ({"width": 48, "height": 48}, (48, 48), (4, 3)),  # a stretch: the display aspect is kept through the SAR
    ):
        out = vsvqdsr.upscale(yuv, weights=str(weights), **kwargs)
        assert (out.format.id, out.width, out.height) == (vs.YUV420P10, *size), kwargs
        p = out.get_frame(1).props
        assert (p["Name"], p["_Matrix"], p["_SARNum"], p["_SARDen"]) == ("s", 1, *sar), kwargs


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scale": 5}, r"scale must be a number in \(0, 4\], got 5"),
        ({"scale": 0}, r"scale must be a number in \(0, 4\]"),
        ({"scale": 2, "width": 32}, "give scale or width/height, not both"),
        ({"width": 33}, "width must be a multiple of 2 for this format's subsampling, got 33"),
        ({"height": 80}, "output size 80x80 is above 4 x the input's 16x16; the net is x4"),
        ({"width": "big"}, "width must be an int >= 1"),
    ],
)
def test_bad_output_size(weights, cartoon, kwargs, message):
    clip = core.resize.Bicubic(clip_from_frames(cartoon(1, 16, 16)), format=vs.YUV420P8, matrix_s="709")
    with pytest.raises(vs.Error, match=r"vsvqdsr\.upscale: " + message):
        vsvqdsr.upscale(clip, weights=str(weights), **kwargs)
