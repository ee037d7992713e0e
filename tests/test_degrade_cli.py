"""The make-pairs / make-lq / degrade commands, run in-process on tiny clips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vqdsr_core.cli import main


def write_clip(folder: Path, frames: np.ndarray) -> None:
    folder.mkdir(parents=True)
    for t, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{t:04d}.png")


def read_pngs(folder: Path) -> torch.Tensor:
    files = sorted(folder.glob("*.png"))
    return torch.from_numpy(np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])).permute(0, 3, 1, 2)


@pytest.fixture
def hr_dir(tmp_path, cartoon):
    root = tmp_path / "hr"
    write_clip(root / "a", cartoon(4, 48, 64, seed=1))
    write_clip(root / "b", cartoon(5, 40, 40, seed=2))
    return root


def test_make_pairs_writes_reproducible_pairs(hr_dir, tmp_path):
    from vqdsr_core.degrade.pipeline import degrade_clip

    out = tmp_path / "pairs"
    assert main(["make-pairs", str(hr_dir), str(out), "--seed", "3", "--n", "2", "--frames", "3", "--crop", "32"]) == 0
    pairs = sorted(out.glob("pair_*"))
    assert [p.name for p in pairs] == ["pair_0000", "pair_0001"]
    for p in pairs:
        meta = json.loads((p / "params.json").read_text())
        hr, lr = read_pngs(p / "hr"), read_pngs(p / "lr")
        assert hr.shape == (3, 3, 32, 32) and lr.shape == (3, 3, 8, 8)
        again = degrade_clip(hr.float().div(255), meta["params"])  # params.json re-applies to the same LR
        assert torch.equal(again.mul(255).round().to(torch.uint8), lr)
    out2 = tmp_path / "pairs2"
    assert main(["make-pairs", str(hr_dir), str(out2), "--seed", "3", "--n", "2", "--frames", "3", "--crop", "32"]) == 0
    for a, b in zip(sorted(out.rglob("*.png")), sorted(out2.rglob("*.png"))):
        assert a.read_bytes() == b.read_bytes()


def test_make_lq_and_bad_arguments(hr_dir, tmp_path):
    out = tmp_path / "lq"
    args = ["make-lq", str(hr_dir), str(out), "--height", "32", "--chunk", "3", "--every", "2", "--no-composite"]
    assert main(args) == 0
    folders = sorted(p.name for p in out.iterdir())
    assert folders == ["hr__a", "hr__b"]
    assert sorted(f.name for f in (out / "hr__a").glob("*.png")) == ["00000000.png", "00000002.png"]
    assert read_pngs(out / "hr__a").shape[-2:] == (32, 42)
    meta = json.loads((out / "hr__b" / "params.json").read_text())
    assert [c["frames"] for c in meta["chunks"]] == [[0, 2], [3, 4]]
    assert all(c["params"]["analog"] is None or c["params"]["analog"]["composite"] is None for c in meta["chunks"])
    assert main(["make-lq", str(hr_dir), str(tmp_path / "x"), "--chunk", "0"]) == 2
    assert main(["make-pairs", str(tmp_path / "missing"), str(tmp_path / "y"), "--seed", "1"]) == 2
    bad = tmp_path / "bad.json"
    bad.write_text('{"crf_rnage": [1, 2]}')
    assert main(["make-pairs", str(hr_dir), str(tmp_path / "y"), "--seed", "1", "--config", str(bad)]) == 2


def test_degrade_command_video_and_frames(tmp_path, cartoon):
    vqgan = pytest.importorskip("vqdsr_core.models.vqgan")
    import av

    from vqdsr_core.weights import save_weights

    torch.manual_seed(0)
    config = {"width": 32, "embed_dim": 8, "n_embed": 64}
    weights = save_weights(
        tmp_path / "vq.safetensors", vqgan.MultiScaleVQGAN(**config), arch="multiscale_vqgan", config=config
    )
    write_clip(tmp_path / "clip", cartoon(3, 16, 24, seed=5))
    video = tmp_path / "out.mp4"
    base = ["--weights", str(weights), "--device", "cpu"]
    assert main(["degrade", str(tmp_path / "clip"), str(video), "--k-mid", "3", "--k-bottom", "20", *base]) == 0
    with av.open(str(video)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 3 and frames[0].shape == (16, 24, 3)
    out = tmp_path / "frames"
    assert main(["degrade", str(video), str(out), "--batch", "2", "--keep-colour", "2", *base]) == 0
    assert read_pngs(out).shape == (3, 3, 16, 24)
    raw = tmp_path / "raw"
    assert main(["degrade", str(video), str(raw), "--batch", "2", *base]) == 0
    src = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float()
    err = [float((read_pngs(d).float() - src).abs().mean()) for d in (out, raw)]
    assert err[0] < err[1]  # keep_colour=2 stays closer to this untrained model's input than the raw default
    assert main(["degrade", str(video), str(raw), "--keep-colour", "-1", *base]) == 2
    with pytest.raises(SystemExit):  # argparse: the k ranges are checked as arguments
        main(["degrade", str(video), str(out), "--k-mid", "0", *base])
    assert not list(tmp_path.glob(".out*"))  # no temp files left behind


@pytest.mark.parametrize("per", ["clip", "frame"])
def test_degrade_command_matches_the_filter(tmp_path, cartoon, per):
    """vqdsr degrade = vsvqdsr.degrade file to file: same default k ranges, seed, per and keep_colour."""
    pytest.importorskip("vapoursynth")
    vqgan = pytest.importorskip("vqdsr_core.models.vqgan")
    from test_plugin_support import clip_from_frames, make_h264

    import vsvqdsr
    from vqdsr_core.weights import save_weights

    torch.manual_seed(0)
    config = {"width": 32, "embed_dim": 8, "n_embed": 64}
    weights = save_weights(
        tmp_path / "vq.safetensors", vqgan.MultiScaleVQGAN(**config), arch="multiscale_vqgan", config=config
    )
    frames = cartoon(4, 16, 24, seed=6)
    write_clip(tmp_path / "clip", frames)
    seed = ["--seed", "5"] if per == "frame" else []
    args = ["--weights", str(weights), "--device", "cpu", "--per", per, *seed, "--batch", "3", "--no-progress"]
    assert main(["degrade", str(tmp_path / "clip"), str(tmp_path / "out"), *args]) == 0
    got = read_pngs(tmp_path / "out").float()
    clip = clip_from_frames(frames)
    want = vsvqdsr.degrade(clip, weights=str(weights), device="cpu", per=per, seed=5 if per == "frame" else 0)
    ref = torch.from_numpy(np.stack([np.stack([np.asarray(f[p]) for p in range(3)]) for f in want.frames()]))
    assert (got - (ref * 255).round()).abs().max() <= 1
    ks = {tuple(f.props[k] for k in ("VQD_KTop", "VQD_KMid", "VQD_KBottom")) for f in want.frames()}
    assert len(ks) == (1 if per == "clip" else 4)  # defaults draw k_mid in 1..10 and k_bottom in 1..50
    if per == "clip":  # a video without a colour description needs --matrix, as the filter needs matrix=
        untagged = make_h264(tmp_path / "u.mp4", frames, tagged=False)
        assert main(["degrade", str(untagged), str(tmp_path / "u"), *args]) == 2
        assert main(["degrade", str(untagged), str(tmp_path / "u"), *args, "--matrix", "601"]) == 0
