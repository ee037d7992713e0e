"""vqdsr eval: two clip sets x both tracks end to end on tiny clips, numbers checked against vqdsr_core.metrics."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import cartoon_frames

from vqdsr_core import cli
from vqdsr_core.data.clips import load_image, save_png_atomic
from vqdsr_core.degrade.codec import encode_frames, roundtrip
from vqdsr_core.evaluation import aggregate, load_clips, make_lr, parse_clip_sets, track_params
from vqdsr_core.evaluation.methods import vsvqdsr_x4
from vqdsr_core.evaluation.report import bar_check, verdict
from vqdsr_core.inference import SequentialUpscaler, upscale_frames
from vqdsr_core.metrics import LPIPS, psnr_y, ssim_y, still_flicker, temporal_error
from vqdsr_core.models.vsr import RecurrentVSRNet
from vqdsr_core.weights import load_model, save_weights

pytest.importorskip("vapoursynth")

N, H, W = 6, 64, 96
CUT = 3
HOLD = [0, 1, 1, 1, 1, 2, 3]  # set "still": source frame per output frame (frames 1-4 identical: 3 still pairs)
CREDIT = "test art (CC0)"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Set "main": two 6-frame 96x64 clips (the second has a hard cut at frame 3); set "still": one clip holding
    still for 3 frame pairs, marked validation-only with an art credit. A random-init VSR net, one eval run."""
    root = tmp_path_factory.mktemp("heldout")
    for i in range(2):
        frames = cartoon_frames(N, H, W, seed=i, motion=3)
        if i == 1:
            frames[CUT:] = cartoon_frames(N - CUT, H, W, seed=11)  # another scene
        for t, f in enumerate(frames):
            save_png_atomic(f, root / f"clip_{i:04d}" / f"{t:08d}.png")
        (root / f"clip_{i:04d}" / "meta.json").write_text(json.dumps({"cuts": [CUT] if i else []}))
    still = tmp_path_factory.mktemp("still")
    src = cartoon_frames(max(HOLD) + 1, H, W, seed=5, motion=3)
    for t, k in enumerate(HOLD):
        save_png_atomic(src[k], still / "clip_0000" / f"{t:08d}.png")
    meta = {"cuts": [], "validation_only": True, "art_credit": CREDIT}
    (still / "clip_0000" / "meta.json").write_text(json.dumps(meta))
    torch.manual_seed(0)
    weights = save_weights(
        tmp_path_factory.mktemp("w") / "vsr.safetensors",
        RecurrentVSRNet(num_feat=16),
        arch="vqdsr_vsr",
        config={"num_feat": 16},
    )
    out = tmp_path_factory.mktemp("out")
    argv = ["eval", "--clips", f"main={root}", "--clips", f"still={still}", "--weights", f"default={weights}"]
    argv += ["--out", str(out), "--tracks", "web,old", "--precision", "fp32", "--lpips-every", "1", "--sanity-hr"]
    assert cli.main(argv) == 0
    result = json.loads((out / "results.json").read_text())
    return {"main": root, "still": still}, weights, out, result


def rows(result, track, method, set_name="main"):
    return [r for r in result["tracks"][track]["per_clip"] if r["method"] == method and r["set"] == set_name]


def test_writes_markdown_tables_bar_and_crops(setup):
    _, _, out, result = setup
    md = (out / "QUALITY.md").read_text()
    for track in ("web", "old"):
        track_md = md.split(f"## Track `{track}`")[1].split("## Track")[0]
        for section in ("### Set `main`", "### Set `still`", "### Pooled: every set"):
            assert section in track_md
        for name in ("bicubic", "realesr-animevideov3", "default", "HR"):
            table_rows = [ln for ln in track_md.splitlines() if ln.startswith(f"| {name} |")]
            assert len(table_rows) == 3  # one row per set and one pooled
        for set_name, n_clips in (("main", 2), ("still", 1)):
            crops = result["tracks"][track]["sets"][set_name]["crops"]
            assert len(crops) == n_clips
            for c in crops:
                assert f"]({c['file']})" in md
                img = load_image(out / c["file"])
                s = c["box"][2]
                assert img.shape[0] == s + 14 and img.shape[1] == 5 * s + 4 * 4  # LR|bicubic|peer|default|HR
        assert f"Art: {CREDIT}" in track_md.split("### Set `still`")[1]  # crops of credited art name it
        assert "Art:" not in track_md.split("### Set `main`")[1].split("### Set `still`")[0]
    assert md.count("**Bar (default):") == 6  # per track: two sets and the pooled rows
    summary = md.split("## Bar: `default` against its targets")[1].split("## Track")[0]
    assert summary.count("| web |") == 3 and summary.count("| old |") == 3
    for crit in ("tE < peer", "LPIPS ≤ peer", "PSNR-Y ≥ peer − 0.2", "PSNR-Y ≥ bicubic − 0.3", "SSIM-Y > bicubic"):
        assert crit in summary
    assert "still flicker ≤ peer" in summary and "tE (0–255)" in md and "still flicker (0–255)" in md
    assert "- commit: `" in md and "- machine: " in md and "- command: `" in md
    assert f"art: {CREDIT}" in md.split("Metrics:")[0]  # the set list names the art of a credited set


def test_command_line_is_written_as_typed():
    from vqdsr_core.evaluation.run import command_line

    assert command_line(["/x/.venv/bin/vqdsr", "eval", "--clips", "a b"]) == "vqdsr eval --clips 'a b'"
    assert command_line(["/x/vqdsr_core/__main__.py", "eval"]) == "python -m vqdsr_core eval"
    assert command_line(["/x/bench/quality.py", "--frames", "3"]) == "python -m bench.quality --frames 3"


def test_metric_columns_are_finite_and_aggregated_by_frame(setup):
    _, _, _, result = setup
    for track, tr in result["tracks"].items():
        for name, row in tr["rows"].items():
            if name == "HR":
                continue
            for key in ("psnr", "ssim", "lpips", "terr", "still", "spf"):
                assert math.isfinite(row[key]), (track, name, key)
            assert row["frames"] == 2 * N + len(HOLD)
            assert row["spf"] >= 0
        main = tr["sets"]["main"]["rows"]
        clips = rows(result, track, "bicubic")
        assert main["bicubic"]["psnr"] == pytest.approx(sum(r["psnr"] * r["frames"] for r in clips) / (2 * N))
        assert main["bicubic"] == pytest.approx(aggregate(clips), nan_ok=True)
        assert math.isnan(main["bicubic"]["still"]) and main["bicubic"]["still_pairs"] == 0  # every pair moves
        pooled = [r for r in tr["per_clip"] if r["method"] == "bicubic"]
        assert len(pooled) == 3 and tr["rows"]["bicubic"] == pytest.approx(aggregate(pooled))
        assert tr["rows"]["bicubic"]["still_pairs"] == 3


def test_bicubic_numbers_equal_the_metrics_module(setup):
    roots, _, _, result = setup
    lpips = LPIPS()
    for track in ("web", "old"):
        for set_name, root in roots.items():
            for clip, row in zip(load_clips(root), rows(result, track, "bicubic", set_name), strict=True):
                lr, hr = make_lr(clip.hr, track)
                assert lr.shape == (len(clip.hr), 3, H // 4, W // 4)
                sr = F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)
                sr = (sr * 255).round() / 255
                assert row["psnr"] == pytest.approx(psnr_y(sr, hr), abs=1e-9)
                assert row["ssim"] == pytest.approx(ssim_y(sr, hr), abs=1e-9)
                assert row["terr"] == pytest.approx(temporal_error(sr, hr, clip.cuts), abs=1e-9)
                if set_name == "still":
                    assert row["still_pairs"] == 3
                    assert row["still"] == pytest.approx(still_flicker(sr, hr, clip.cuts), abs=1e-9)
                    if track == "old":  # composite dot crawl changes the LR of a held shot frame to frame
                        assert row["still"] > 0
                with torch.no_grad():
                    assert row["lpips"] == pytest.approx(float(lpips(sr, hr).double().mean()), abs=1e-5)


def test_hr_sanity_row_is_perfect(setup):
    _, _, _, result = setup
    for track in ("web", "old"):
        row = result["tracks"][track]["rows"]["HR"]
        assert row["psnr"] == math.inf and row["ssim"] == pytest.approx(1.0)
        assert row["lpips"] == pytest.approx(0.0, abs=1e-7) and row["terr"] == 0.0 and row["still"] == 0.0


def test_temporal_error_excludes_cuts(setup):
    roots, _, _, result = setup
    clips = load_clips(roots["main"])
    assert [c.cuts for c in clips] == [[], [CUT]]
    plain, cut = rows(result, "web", "bicubic")
    assert plain["terr_pairs"] == N - 1 and cut["terr_pairs"] == N - 2
    lr, hr = make_lr(clips[1].hr, "web")
    sr = F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1).mul(255).round() / 255
    with_cut_pair = temporal_error(sr, hr)  # the scene change counted as motion: a different number
    assert cut["terr"] == pytest.approx(temporal_error(sr, hr, [CUT]))
    assert abs(cut["terr"] - with_cut_pair) > 1e-4


def test_tracks_are_deterministic_and_distinct(setup):
    roots, _, _, _ = setup
    hr = load_clips(roots["main"])[0].hr
    web1, _ = make_lr(hr, "web")
    web2, _ = make_lr(hr, "web")
    old, _ = make_lr(hr, "old")
    assert torch.equal(web1, web2)
    assert (web1 - old).abs().mean() > 0.01
    assert torch.equal(web1, (web1 * 255).round() / 255)  # on the 8-bit grid


def test_vsvqdsr_row_is_the_filter_output_of_the_plain_loop(setup):
    roots, weights, _, result = setup
    clip = load_clips(roots["main"])[0]  # no cut: the filter's scene detection does not fire
    lr, hr = make_lr(clip.hr, "web")
    sr, _ = vsvqdsr_x4(lr, weights, precision="fp32")
    model, _ = load_model(weights)
    ref = torch.stack(upscale_frames(SequentialUpscaler(model), list(lr)))
    assert sr.shape == hr.shape
    assert (sr - ref).abs().max() <= 1 / 255 + 1e-6  # RGB24 output: 8-bit rounding of the same frames
    assert rows(result, "web", "default")[0]["psnr"] == pytest.approx(psnr_y(sr, hr), abs=1e-3)


def test_bar_check_criteria():
    bic = {"psnr": 30.0, "ssim": 0.90, "lpips": 0.25, "terr": 0.020, "still": 0.004}
    peer = {"psnr": 30.4, "ssim": 0.93, "lpips": 0.18, "terr": 0.016, "still": 0.003}
    good = {"psnr": 30.2, "ssim": 0.91, "lpips": 0.18, "terr": 0.015, "still": 0.003}
    res = bar_check({"bicubic": bic, "realesr-animevideov3": peer, "m": good}, "m")
    assert [ok for _, ok, _ in res] == [True] * 6 and verdict([ok for _, ok, _ in res]) == "PASS"
    assert res[0][2] == "3.825 vs < 4.080"  # tE on the 0-255 scale
    bad = dict(good, psnr=30.19, terr=0.016, lpips=0.181, still=0.0031)  # 0.21 dB behind the peer: misses
    res = {name: ok for name, ok, _ in bar_check({"bicubic": bic, "realesr-animevideov3": peer, "m": bad}, "m")}
    assert res == {
        "tE < peer": False,
        "LPIPS ≤ peer": False,
        "PSNR-Y ≥ peer − 0.2": False,
        "PSNR-Y ≥ bicubic − 0.3": True,
        "SSIM-Y > bicubic": True,
        "still flicker ≤ peer": False,
    }
    low = dict(good, psnr=29.69, ssim=0.90)  # 0.31 dB behind bicubic, SSIM only equal
    res = {
        name: ok
        for name, ok, _ in bar_check({"bicubic": bic, "realesr-animevideov3": dict(peer, psnr=29.8), "m": low}, "m")
    }
    assert res["PSNR-Y ≥ peer − 0.2"] and not res["PSNR-Y ≥ bicubic − 0.3"] and not res["SSIM-Y > bicubic"]
    no_peer = bar_check({"bicubic": bic, "m": dict(good, still=math.nan)}, "m")
    assert [ok for _, ok, _ in no_peer] == [None, None, None, True, True, None]
    assert verdict([ok for _, ok, _ in no_peer]) == "INCOMPLETE"


def test_clip_sets_take_paths_and_names(tmp_path):
    (tmp_path / "a=b").mkdir()
    sets = parse_clip_sets(["data/hr_val", "kt=data/kt_val", str(tmp_path / "a=b")])
    assert sets == {"hr_val": Path("data/hr_val"), "kt": Path("data/kt_val"), "a=b": tmp_path / "a=b"}
    with pytest.raises(ValueError, match="given twice"):
        parse_clip_sets(["x/val", "y/val"])


def test_web_track_codec_is_x264_yuv420p_bt709():
    """The web track encodes what users feed in: 4:2:0 chroma, BT.709 matrix and tags, CRF 30."""
    import av

    (gen,) = track_params("web", 4)["codec"]["generations"]
    assert gen == {"codec": "h264", "crf": 30.0, "profile": "high", "matrix": "bt709"}
    flat = np.full((2, 16, 16, 3), (30, 200, 90), np.uint8)
    data = encode_frames(flat, "h264", crf=30.0, profile="high", matrix="bt709")
    ctx = av.CodecContext.create("h264", "r")
    frame = next(f for p in [*ctx.parse(data), *ctx.parse(None), None] for f in ctx.decode(p))
    assert frame.format.name == "yuv420p" and int(frame.colorspace) == 1  # stream tagged BT.709
    y = 0.2126 * 30 + 0.7152 * 200 + 0.0722 * 90
    assert abs(int(frame.to_ndarray()[0, 0]) - (16 + 219 * y / 255)) <= 1  # BT.709 limited-range luma (BT.601: 133)
    # 1-px red/blue columns: 4:2:0 halves the chroma resolution, so the two colours run together; the training
    # default (BT.601) is untouched by the option
    cols = np.zeros((2, 16, 16, 3), np.uint8)
    cols[:, :, ::2], cols[:, :, 1::2] = (220, 30, 30), (30, 30, 220)
    clip = torch.from_numpy(cols).permute(0, 3, 1, 2).float() / 255
    out, _ = roundtrip(clip, gen)
    red_minus_blue = (out[:, 0] - out[:, 2])[..., 4:-4, 4:-4]  # +190/255 on even columns, -190/255 on odd ones
    contrast = red_minus_blue[..., ::2].mean() - red_minus_blue[..., 1::2].mean()
    assert contrast < 0.5 * (2 * 190 / 255)
    assert not torch.equal(roundtrip(clip, dict(gen, matrix="bt601"))[0], out)
    with pytest.raises(ValueError, match="matrix"):
        roundtrip(clip, dict(gen, matrix="rgb"))


def test_cli_help_does_not_import_torch():
    code = "import sys; from vqdsr_core import cli; cli.build_parser(); print('torch' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "False"


def test_cli_errors_are_clear(tmp_path, capsys):
    assert cli.main(["eval", "--clips", str(tmp_path), "--weights", "default=/nonexistent.safetensors"]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["eval", "--clips", str(tmp_path), "--weights", "no-equals-sign"])
    assert "NAME=PATH" in capsys.readouterr().err
    assert cli.main(["eval", "--clips", str(tmp_path), "--weights", f"a={tmp_path}", "--tracks", "tv"]) == 2
    assert "tracks" in capsys.readouterr().err
    argv = ["eval", "--clips", f"x={tmp_path}", "--clips", f"x={tmp_path}", "--weights", f"a={__file__}"]
    assert cli.main(argv) == 2
    assert "given twice" in capsys.readouterr().err


def test_bench_quality_wraps_the_same_options(tmp_path):
    root = Path(__file__).resolve().parents[1]
    run = [sys.executable, "-m", "bench.quality", "--clips", str(tmp_path / "missing")]
    res = subprocess.run([*run, "--weights", f"default={__file__}"], cwd=root, capture_output=True, text=True)
    assert res.returncode == 2
    assert "missing" in res.stderr and "Traceback" not in res.stderr
    assert res.stdout == ""
