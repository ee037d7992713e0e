"""VQGAN training on tiny data: the top stage, then the multi stage started from it; codebook stats logged."""

from __future__ import annotations

import json

import torch

from vqdsr_core.cli import main
from vqdsr_core.data.clips import save_png_atomic
from vqdsr_core.models.vqgan import MultiScaleVQGAN
from vqdsr_core.train import checkpoint as ck
from vqdsr_core.weights import load_model

TINY = """
kind = "vqgan"
[run]
num_workers = 0
log_every = 1
ckpt_every = 100
val_every = 2
sample_every = 2
progress = false
threads = 1
[data]
train = ["{data}"]
val = "{val}"
crop = 32
val_images = 2
[model]
width = 32
embed_dim = 8
n_embed = 16
[top]
batch_size = 2
total_iter = 2
disc_start = 1
d_ndf = 8
[multi]
batch_size = 1
total_iter = 2
disc_start = 0
d_ndf = 8
"""


def test_top_then_multi(tmp_path, cartoon):
    for split, n in (("data", 4), ("val", 2)):
        for i, f in enumerate(cartoon(n, 40, 48, seed=3 if split == "val" else 0)):
            save_png_atomic(f, tmp_path / split / f"{i:04d}.png")
    cfg = tmp_path / "vq.toml"
    cfg.write_text(TINY.format(data=tmp_path / "data", val=tmp_path / "val"))
    top, multi = tmp_path / "top", tmp_path / "multi"
    assert main(["train-vqgan", str(cfg), "--stage", "top", "--out", str(top), "--set", "top.base_lr=5e-4"]) == 0
    c = ck.read_checkpoint(top / ck.LATEST)
    assert c["step"] == 2 and c["export"]["config"]["multiscale"] is False
    rows = [json.loads(x) for x in (top / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"]
    assert "l_g" not in train[0] and {"l_g", "d_weight", "l_d"} <= set(train[1])  # adversarial from disc_start
    assert 1.0 <= train[0]["perplexity_top"] <= 16 and 0 < train[0]["usage_top"] <= 1
    assert train[0]["lr_g"] == 5e-4 * 2  # base_lr x 1 process x batch 2
    assert any(r["kind"] == "val" and "lpips" in r for r in rows) and (top / ck.BEST).exists()
    assert any(p.name.startswith("events.out.tfevents") for p in (top / "tb").iterdir())

    args = ["train-vqgan", str(cfg), "--stage", "multi", "--out", str(multi), "--set", f"multi.init={top / ck.LATEST}"]
    assert main(args) == 0
    m = ck.read_checkpoint(multi / ck.LATEST)
    last = json.loads((multi / "metrics.jsonl").read_text().splitlines()[0])
    assert {"perplexity_mid", "perplexity_bot", "l_g"} <= set(last)
    assert last["lr_g0"] == last["lr_g1"] * 0.25  # shared trunk/codebook/decoder at a quarter of the LR
    # the shared modules start from the trained top stage, not from a fresh initialisation
    torch.manual_seed(0)
    fresh = MultiScaleVQGAN(width=32, embed_dim=8, n_embed=16).state_dict()
    for name in ("top.quantize.embedding.weight", "top.enc_f1.0.conv1.weight", "conv_in.weight"):
        trained_top, now = c["models"]["g"][name], m["models"]["g"][name]
        assert (trained_top - fresh[name]).abs().max() > 1e-3
        torch.testing.assert_close(now, trained_top, atol=1e-4, rtol=0)
    model, info = load_model(multi / "final.safetensors", arch="multiscale_vqgan")
    assert info.config["multiscale"] is True
    out = model.degrade(torch.rand(2, 3, 12, 20), k_top=1, k_mid=2, k_bottom=3)
    assert out.shape == (2, 3, 12, 20) and 0 <= out.min() and out.max() <= 1


def test_dead_code_restarts_move_every_unused_code(tmp_path, cartoon):
    """restart_dead_codes=1: after each step, exactly the codes that step did not pick move onto encoder outputs."""
    for i, f in enumerate(cartoon(4, 40, 48, seed=0)):
        save_png_atomic(f, tmp_path / "data" / f"{i:04d}.png")
    cfg = tmp_path / "vq.toml"
    cfg.write_text(TINY.format(data=tmp_path / "data", val=""))
    run = tmp_path / "top"
    args = ["train-vqgan", str(cfg), "--stage", "top", "--out", str(run), "--set", "top.restart_dead_codes=1"]
    assert main([*args, "--set", "top.disc_start=-1", "--set", "run.val_every=0"]) == 0
    train = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in train if r["kind"] == "train"]
    assert len(train) == 2
    for r in train:
        assert r["codes_restarted"] == round(16 * (1 - r["usage_top"])) > 0
    torch.manual_seed(0)
    init = MultiScaleVQGAN(width=32, embed_dim=8, n_embed=16, multiscale=False).quantize.embedding.weight.detach()
    now = ck.read_checkpoint(run / ck.LATEST)["models"]["g"]["top.quantize.embedding.weight"]
    # restarted codes jumped onto encoder outputs; a code trained for 2 steps moves by ~lr, an unused one not at all
    moved = (now - init).norm(dim=1)
    assert int((moved > 0.05).sum()) >= train[-1]["codes_restarted"] and float(moved.min()) < 1e-3
