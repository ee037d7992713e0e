"""VSR training end to end on tiny data: both stages, checkpoints, exact resume, export, SIGTERM, ONNX."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vqdsr_core.cli import main
from vqdsr_core.data.clips import save_png_atomic
from vqdsr_core.train import checkpoint as ck
from vqdsr_core.weights import load_model, save_weights

ROOT = Path(__file__).resolve().parents[1]

TINY = """
kind = "vsr"
[run]
num_workers = 0
log_every = 1
ckpt_every = 100
val_every = 0
sample_every = 0
progress = false
tensorboard = false
threads = 1
[data]
train = ["{data}"]
num_frame = 3
gt_size = 32
[model]
num_feat = 8
num_block = [2, 1, 1]
[degrade]
codec_prob = 0.5
vq_k_mid = [1, 4]
vq_k_bottom_levels = [[1, 8]]
vq_k_bottom_probs = [1.0]
[net]
batch_size = 2
total_iter = 4
usm_radius = 5
[gan]
batch_size = 1
total_iter = 2
d_scales = 1
d_ndf = 8
[gan.perceptual_layers]
conv1_2 = 0.1
conv2_2 = 0.1
conv3_3 = 1.0
conv4_3 = 0.0
conv5_3 = 0.0
"""


def write_clips(root: Path, frames_fn, n_clips: int = 2, n_frames: int = 6, size: int = 48, seed: int = 0) -> Path:
    for c in range(n_clips):
        for i, f in enumerate(frames_fn(n_frames, size, size, seed=seed + c)):
            save_png_atomic(f, root / f"clip{c}" / f"{i:04d}.png")
    return root


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from conftest import cartoon_frames

    tmp = tmp_path_factory.mktemp("vsr")
    data = write_clips(tmp / "data", cartoon_frames)
    cfg = tmp / "tiny.toml"
    cfg.write_text(TINY.format(data=data))
    return tmp, cfg


def losses(run: Path) -> list[dict]:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x]
    return [x for x in lines if x["kind"] == "train"]


def train(cfg, out, *args) -> int:
    return main(["train-vsr", str(cfg), "--out", str(out), *args])


def test_net_stage_resume_is_exact_and_exports(setup):
    tmp, cfg = setup
    straight, split = tmp / "straight", tmp / "split"
    assert train(cfg, straight, "--stage", "net", "--set", "net.total_iter=6") == 0
    assert train(cfg, split, "--stage", "net", "--set", "net.total_iter=3") == 0
    assert ck.read_checkpoint(split / ck.LATEST)["step"] == 3
    assert train(cfg, split, "--stage", "net", "--set", "net.total_iter=3") == 2  # refuses to overwrite a run
    assert train(cfg, split, "--stage", "net", "--set", "net.total_iter=6", "--resume") == 0
    a, b = losses(straight), losses(split)
    assert [x["step"] for x in b] == [1, 2, 3, 4, 5, 6]
    assert [x["l_pix"] for x in a] == pytest.approx([x["l_pix"] for x in b], abs=1e-6, rel=0)
    assert len({x["l_pix"] for x in a}) == 6  # the losses really change from step to step
    ca, cb = ck.read_checkpoint(straight / ck.LATEST), ck.read_checkpoint(split / ck.LATEST)
    for k, v in ca["ema"]["g"].items():
        torch.testing.assert_close(v, cb["ema"]["g"][k], atol=1e-6, rtol=0)
    assert ck.read_checkpoint(split / ck.PREVIOUS)["step"] == 3

    # the run's final weight file and `vqdsr export` both load as the plugin loads them
    model, info = load_model(straight / "final.safetensors", arch="vqdsr_vsr")
    assert info.extra["ema"] == "yes" and info.extra["step"] == "6"
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, ca["ema"]["g"][k])
    assert main(["export", str(straight / ck.LATEST), str(tmp / "raw16.safetensors"), "--raw", "--fp16"]) == 0
    raw, info = load_model(tmp / "raw16.safetensors", arch="vqdsr_vsr")
    assert info.extra["ema"] == "no"
    w = "trunk.conv_s1_first.weight"
    torch.testing.assert_close(raw.state_dict()[w], ca["models"]["g"][w].half().float())
    assert not torch.equal(ca["models"]["g"][w], ca["ema"]["g"][w])
    lr = torch.rand(1, 2, 3, 8, 8)
    assert model(lr).shape == (1, 2, 3, 32, 32)


def test_net_stage_temporal_losses_finetune_and_cosine(setup):
    tmp, cfg = setup
    base = tmp / "tl_base"
    assert (
        train(cfg, base, "--stage", "net", "--set", "net.total_iter=2", "--set", "net.lr=1e-2", "--set", "net.ema=0")
        == 0
    )
    init = base / "final.safetensors"
    run = tmp / "tl_run"
    args = ["--stage", "net", "--set", f"net.init={init}", "--set", "net.temporal_weight=1.0"]
    args += [
        "--set",
        "net.temporal_hold_weight=4.0",
        "--set",
        "data.hold_prob=1.0",
        "--set",
        "net.pingpong_weight=0.5",
        "--set",
        "net.lr_schedule=cosine",
        "--set",
        "net.total_iter=3",
    ]
    args += ["--set", "net.perceptual_weight=0.1", "--set", "net.perceptual_layers.conv4_3=0"]
    args += ["--set", "net.perceptual_layers.conv5_3=0", "--set", "net.lpips_weight=0.5", "--set", "net.lpips_frames=2"]
    assert train(cfg, run, *args) == 0
    rows = losses(run)
    assert {"l_pix", "l_temporal", "l_pingpong", "l_percep", "l_lpips"} <= set(rows[-1])
    assert all(r["l_temporal"] > 0 and r["l_pingpong"] > 0 and r["l_lpips"] > 0 for r in rows)
    # cosine decay: the learning rate falls every step, towards lr_min = 0 at total_iter
    lrs = [r["lr_g"] for r in rows]
    assert lrs[0] > lrs[1] > lrs[2] == pytest.approx(0.0, abs=1e-12)
    # fine-tuned from the init file, not from a fresh model
    w = "trunk.conv_s1_first.weight"
    start = load_model(init, arch="vqdsr_vsr")[0].state_dict()[w]
    ema = ck.read_checkpoint(run / ck.LATEST)["ema"]["g"][w]
    assert (ema - start).abs().max() < 1e-3
    torch.manual_seed(0)
    from vqdsr_core.models.vsr import RecurrentVSRNet

    assert (start - RecurrentVSRNet(num_feat=8, num_block=(2, 1, 1)).state_dict()[w]).abs().max() > 5e-3
    assert train(cfg, tmp / "tl_bad", "--stage", "net", "--set", "net.lr_schedule=linear") == 2


def test_gan_stage_from_net_with_vq(setup):
    from vqdsr_core.models.vqgan import MultiScaleVQGAN

    tmp, cfg = setup
    net = tmp / "net_for_gan"
    assert (
        train(cfg, net, "--stage", "net", "--set", "net.total_iter=1", "--set", "net.lr=1e-2", "--set", "net.ema=0")
        == 0
    )
    vq = tmp / "vq.safetensors"
    vq_cfg = {"width": 32, "embed_dim": 8, "n_embed": 16, "multiscale": True}
    save_weights(vq, MultiScaleVQGAN(**vq_cfg), arch="multiscale_vqgan", config=vq_cfg)
    gan = tmp / "gan"
    args = ["--stage", "gan", "--set", f"gan.init={net / ck.LATEST}", "--set", f"gan.vqgan={vq}"]
    assert train(cfg, gan, *args, "--set", "run.num_workers=1") == 0
    c = ck.read_checkpoint(gan / ck.LATEST)
    assert c["step"] == 2 and set(c["models"]) == {"g", "d"} and set(c["optimizers"]) == {"g", "d"}
    rows = losses(gan)
    assert {"l_pix", "l_percep", "l_gan", "l_d_real", "l_d_fake"} <= set(rows[-1])
    # initialised from the net stage (no EMA there: its raw weights), not from a fresh model
    from vqdsr_core.models.vsr import RecurrentVSRNet

    torch.manual_seed(0)
    fresh = RecurrentVSRNet(num_feat=8, num_block=(2, 1, 1)).state_dict()
    init = ck.read_checkpoint(net / ck.LATEST)["models"]["g"]
    w = "trunk.conv_s1_first.weight"
    assert (init[w] - fresh[w]).abs().max() > 5e-3
    assert (c["models"]["g"][w] - init[w]).abs().max() < 1e-3
    load_model(gan / "final.safetensors", arch="vqdsr_vsr")
    # a VQGAN given but the config forbids the VQ step -> clear error
    assert train(cfg, tmp / "gan_bad", *args, "--set", "degrade.vq=false") == 2


def test_onnx_cell_export(setup, tmp_path):
    onnx = pytest.importorskip("onnx")
    tmp, cfg = setup
    run = tmp / "onnx_run"
    assert train(cfg, run, "--stage", "net", "--set", "net.total_iter=1") == 0
    out = tmp_path / "cell.onnx"
    assert main(["export", str(run / ck.LATEST), str(out), "--onnx"]) == 0
    m = onnx.load(str(out))
    onnx.checker.check_model(m)
    assert [i.name for i in m.graph.input] == ["lr_prev", "lr", "lr_next", "state"]
    assert [o.name for o in m.graph.output] == ["sr", "state_out"]


def test_sigterm_saves_a_valid_checkpoint(setup):
    tmp, cfg = setup
    run = tmp / "sigterm"
    cmd = [sys.executable, "-m", "vqdsr_core.cli", "train-vsr", str(cfg), "--stage", "net", "--out", str(run),
           "--set", "net.total_iter=100000"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if (run / "metrics.jsonl").exists() and len((run / "metrics.jsonl").read_text().splitlines()) >= 2:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err  # a stage chain (`top && multi`) must not go on
    assert "stopped by signal" in err and "Traceback" not in err
    c = ck.read_checkpoint(run / ck.LATEST)
    assert c["step"] == losses(run)[-1]["step"] >= 2
    assert not (run / "final.safetensors").exists()  # interrupted, not finished


def test_still_stretch():
    from vqdsr_core.train.vsr import still_stretch

    hr = torch.rand(6, 3, 4, 4)
    assert still_stretch(hr, 0, 0.0) is hr
    outs = [still_stretch(hr, s, 1.0) for s in range(20)]
    for out in outs:
        diffs = [bool((out[t] != out[t - 1]).any()) for t in range(1, 6)]
        start = diffs.index(False)  # motion stops at some frame and never restarts
        assert not any(diffs[start:]) and torch.equal(out[: start + 1], hr[: start + 1])
    assert len({int(sum((o[t] != o[t - 1]).any() for t in range(1, 6))) for o in outs}) > 2  # varied starts
    assert torch.equal(still_stretch(hr, 3, 1.0), outs[3])  # seeded
    frac = sum(still_stretch(hr, s, 0.3) is not hr for s in range(400)) / 400
    assert 0.2 < frac < 0.4


def test_lpips_frame_index_draws_a_reproducible_subset():
    from vqdsr_core.train.checkpoint import rng_state, set_rng_state
    from vqdsr_core.train.vsr import lpips_frame_index

    assert lpips_frame_index(7, 0) == slice(None) and lpips_frame_index(7, 7) == slice(None)
    state = rng_state()
    draws = [lpips_frame_index(7, 2).tolist() for _ in range(200)]
    assert all(len(d) == 2 and d[0] < d[1] and 0 <= d[0] and d[1] < 7 for d in draws)  # distinct, sorted, in range
    assert len({f for d in draws for f in d}) == 7 and len({tuple(d) for d in draws}) > 15  # every frame, many pairs
    set_rng_state(state)
    assert [lpips_frame_index(7, 2).tolist() for _ in range(200)] == draws  # a resumed run draws the same frames
    with pytest.raises(ValueError, match="lpips_frame_index: k must be >= 0"):
        lpips_frame_index(7, -1)


def test_held_frames_animate_on_twos_and_threes():
    from vqdsr_core.train.vsr import held_frames

    hr = torch.arange(9, dtype=torch.float32).view(9, 1, 1, 1).expand(9, 3, 2, 2).contiguous()
    assert held_frames(hr, 0, 0.0) is hr
    patterns = set()
    for s in range(40):
        out = held_frames(hr, s, 1.0)
        src = [int(v) for v in out[:, 0, 0, 0]]  # which input frame each output frame shows
        assert src[0] == 0 and all(0 <= b - a for a, b in itertools.pairwise(src))  # time never runs backwards
        runs = [len(list(g)) for _, g in itertools.groupby(src)]
        n = max(runs)
        assert n in (2, 3) and all(r == n for r in runs[1:-1])  # every inner drawing held n frames
        assert len({v % n for v in set(src) - {0}}) == 1  # the drawings: one of every n of the clip's own frames
        patterns.add((n, src[1]))
    assert {n for n, _ in patterns} == {2, 3} and len(patterns) >= 4  # twos and threes, several phases
    assert torch.equal(held_frames(hr, 5, 1.0), held_frames(hr, 5, 1.0))  # seeded
    frac = sum(held_frames(hr, s, 0.5) is not hr for s in range(400)) / 400
    assert 0.4 < frac < 0.6


def test_crop_pair_cuts_the_same_spot_from_lr_and_hr():
    from vqdsr_core.train.vsr import crop_pair

    hr = torch.rand(3, 3, 64, 48)
    lr = torch.nn.functional.avg_pool2d(hr, 4)  # (3, 3, 16, 12): each LR pixel is the mean of its 4x4 HR block
    spots = set()
    for seed in range(30):
        lc, hc = crop_pair(lr, hr, 32, seed)
        assert lc.shape == (3, 3, 8, 8) and hc.shape == (3, 3, 32, 32)
        torch.testing.assert_close(torch.nn.functional.avg_pool2d(hc, 4), lc)  # the same spot, aligned to the scale
        spots.add(hc[0, 0, 0, 0].item())
    assert len(spots) > 10  # varied spots
    assert torch.equal(crop_pair(lr, hr, 32, 3)[1], crop_pair(lr, hr, 32, 3)[1])  # seeded
    with pytest.raises(ValueError, match="crop_pair: a 30 HR crop needs a multiple of 4"):
        crop_pair(lr, hr, 30, 0)
    with pytest.raises(ValueError, match="crop_pair: a 64 HR crop"):
        crop_pair(lr, hr, 64, 0)


def test_net_stage_degrades_a_larger_crop_then_trains_on_gt_size(setup):
    from vqdsr_core.train.config import load_config
    from vqdsr_core.train.loop import Env
    from vqdsr_core.train.vsr import VSRTask

    tmp, cfg = setup
    run = tmp / "dsz"
    assert train(cfg, run, "--stage", "net", "--set", "data.degrade_size=48", "--set", "net.total_iter=2") == 0
    assert len(losses(run)) == 2
    task = VSRTask(load_config(cfg, "vsr", ["data.degrade_size=48"]), "net", Env(0, 1, 0, torch.device("cpu"), None))
    item = task.dataset()[5]
    assert item["lr"].shape == (3, 3, 8, 8) and item["hr"].shape == item["gt_usm"].shape == (3, 3, 32, 32)
    assert train(cfg, tmp / "dsz_bad", "--stage", "net", "--set", "data.degrade_size=46") == 2
    assert train(cfg, tmp / "dsz_small", "--stage", "net", "--set", "data.degrade_size=16") == 2
