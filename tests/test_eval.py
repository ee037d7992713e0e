"""vqdsr eval: both tracks end to end on two tiny clips, numbers checked against vqdsr_core.metrics directly."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import cartoon_frames

from vqdsr_core import cli
from vqdsr_core.data.clips import load_image, save_png_atomic
from vqdsr_core.evaluation import aggregate, load_clips, make_lr
from vqdsr_core.evaluation.methods import vsvqdsr_x4
from vqdsr_core.evaluation.report import bar_check
from vqdsr_core.inference import SequentialUpscaler, upscale_frames
from vqdsr_core.metrics import LPIPS, psnr_y, ssim_y, temporal_error
from vqdsr_core.models.vsr import RecurrentVSRNet
from vqdsr_core.weights import load_model, save_weights

pytest.importorskip("vapoursynth")

N, H, W = 6, 64, 96
CUT = 3


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Two 6-frame 96x64 clips (the second has a hard cut at frame 3), a random-init VSR net, one eval run."""
    root = tmp_path_factory.mktemp("heldout")
    for i in range(2):
        frames = cartoon_frames(N, H, W, seed=i, motion=3)
        if i == 1:
            frames[CUT:] = cartoon_frames(N - CUT, H, W, seed=11)  # another scene
        for t, f in enumerate(frames):
            save_png_atomic(f, root / f"clip_{i:04d}" / f"{t:08d}.png")
        (root / f"clip_{i:04d}" / "meta.json").write_text(json.dumps({"cuts": [CUT] if i else []}))
    torch.manual_seed(0)
    weights = save_weights(
        tmp_path_factory.mktemp("w") / "vsr.safetensors",
        RecurrentVSRNet(num_feat=16),
        arch="vqdsr_vsr",
        config={"num_feat": 16},
    )
    out = tmp_path_factory.mktemp("out")
    argv = ["eval", "--clips", str(root), "--weights", f"default={weights}", "--out", str(out)]
    argv += ["--tracks", "web,old", "--precision", "fp32", "--lpips-every", "1", "--sanity-hr"]
    assert cli.main(argv) == 0
    result = json.loads((out / "results.json").read_text())
    return root, weights, out, result


def rows(result, track, method):
    return [r for r in result["tracks"][track]["per_clip"] if r["method"] == method]


def test_writes_markdown_tables_bar_and_crops(setup):
    _, _, out, result = setup
    md = (out / "QUALITY.md").read_text()
    for track in ("web", "old"):
        assert f"## Track `{track}`" in md
        for name in ("bicubic", "realesr-animevideov3", "default", "HR"):
            assert f"| {name} |" in md
        crops = result["tracks"][track]["crops"]
        assert len(crops) == 2
        for c in crops:
            assert f"]({c['file']})" in md
            img = load_image(out / c["file"])
            s = c["box"][2]
            assert img.shape[0] == s + 14 and img.shape[1] == 5 * s + 4 * 4  # LR|bicubic|peer|default|HR
    assert md.count("**Bar (default vs bicubic):") == 2
    bar = md.split("**Bar (default vs bicubic):")[1]
    assert all(k in bar.split("\n")[0] for k in ("PSNR-Y", "SSIM-Y", "LPIPS", "tErr"))
    assert "- commit: `" in md and "- machine: " in md and "- command: `" in md


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
            for key in ("psnr", "ssim", "lpips", "terr", "spf"):
                assert math.isfinite(row[key]), (track, name, key)
            assert row["frames"] == 2 * N
            assert row["spf"] >= 0
        clips = rows(result, track, "bicubic")
        assert tr["rows"]["bicubic"]["psnr"] == pytest.approx(sum(r["psnr"] * r["frames"] for r in clips) / (2 * N))
        assert tr["rows"]["bicubic"] == pytest.approx(aggregate(clips))


def test_bicubic_numbers_equal_the_metrics_module(setup):
    root, _, _, result = setup
    lpips = LPIPS()
    for track in ("web", "old"):
        for clip, row in zip(load_clips(root), rows(result, track, "bicubic")):
            lr, hr = make_lr(clip.hr, track)
            assert lr.shape == (N, 3, H // 4, W // 4)
            sr = F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)
            sr = (sr * 255).round() / 255
            assert row["psnr"] == pytest.approx(psnr_y(sr, hr), abs=1e-9)
            assert row["ssim"] == pytest.approx(ssim_y(sr, hr), abs=1e-9)
            assert row["terr"] == pytest.approx(temporal_error(sr, hr, clip.cuts), abs=1e-9)
            with torch.no_grad():
                assert row["lpips"] == pytest.approx(float(lpips(sr, hr).double().mean()), abs=1e-5)


def test_hr_sanity_row_is_perfect(setup):
    _, _, _, result = setup
    for track in ("web", "old"):
        row = result["tracks"][track]["rows"]["HR"]
        assert row["psnr"] == math.inf and row["ssim"] == pytest.approx(1.0)
        assert row["lpips"] == pytest.approx(0.0, abs=1e-7) and row["terr"] == 0.0


def test_temporal_error_excludes_cuts(setup):
    root, _, _, result = setup
    clips = load_clips(root)
    assert [c.cuts for c in clips] == [[], [CUT]]
    plain, cut = rows(result, "web", "bicubic")
    assert plain["terr_pairs"] == N - 1 and cut["terr_pairs"] == N - 2
    lr, hr = make_lr(clips[1].hr, "web")
    sr = F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1).mul(255).round() / 255
    with_cut_pair = temporal_error(sr, hr)  # the scene change counted as motion: a different number
    assert cut["terr"] == pytest.approx(temporal_error(sr, hr, [CUT]))
    assert abs(cut["terr"] - with_cut_pair) > 1e-4


def test_tracks_are_deterministic_and_distinct(setup):
    root, _, _, _ = setup
    hr = load_clips(root)[0].hr
    web1, _ = make_lr(hr, "web")
    web2, _ = make_lr(hr, "web")
    old, _ = make_lr(hr, "old")
    assert torch.equal(web1, web2)
    assert (web1 - old).abs().mean() > 0.01
    assert torch.equal(web1, (web1 * 255).round() / 255)  # on the 8-bit grid


def test_vsvqdsr_row_is_the_filter_output_of_the_plain_loop(setup):
    root, weights, _, result = setup
    clip = load_clips(root)[0]  # no cut: the filter's scene detection does not fire
    lr, hr = make_lr(clip.hr, "web")
    sr, _ = vsvqdsr_x4(lr, weights, precision="fp32")
    model, _ = load_model(weights)
    ref = torch.stack(upscale_frames(SequentialUpscaler(model), list(lr)))
    assert sr.shape == hr.shape
    assert (sr - ref).abs().max() <= 1 / 255 + 1e-6  # RGB24 output: 8-bit rounding of the same frames
    assert rows(result, "web", "default")[0]["psnr"] == pytest.approx(psnr_y(sr, hr), abs=1e-3)


def test_bar_check_criteria():
    base = {"psnr": 30.0, "ssim": 0.90, "lpips": 0.20, "terr": 0.010}
    good = {"psnr": 29.6, "ssim": 0.91, "lpips": 0.15, "terr": 0.008}
    assert all(ok for _, ok, _ in bar_check({"bicubic": base, "m": good}, "m"))
    bad = dict(good, psnr=29.4, terr=0.011)
    res = {name: ok for name, ok, _ in bar_check({"bicubic": base, "m": bad}, "m")}
    assert res == {"PSNR-Y": False, "SSIM-Y": True, "LPIPS": True, "tErr": False}


def test_cli_errors_are_clear(tmp_path, capsys):
    assert cli.main(["eval", "--clips", str(tmp_path), "--weights", "default=/nonexistent.safetensors"]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["eval", "--clips", str(tmp_path), "--weights", "no-equals-sign"])
    assert "NAME=PATH" in capsys.readouterr().err
    assert cli.main(["eval", "--clips", str(tmp_path), "--weights", f"a={tmp_path}", "--tracks", "tv"]) == 2
    assert "tracks" in capsys.readouterr().err


def test_bench_quality_wraps_the_same_options(tmp_path):
    root = Path(__file__).resolve().parents[1]
    run = [sys.executable, "-m", "bench.quality", "--clips", str(tmp_path / "missing")]
    res = subprocess.run([*run, "--weights", f"default={__file__}"], cwd=root, capture_output=True, text=True)
    assert res.returncode == 2
    assert "missing" in res.stderr and "Traceback" not in res.stderr
    assert res.stdout == ""
