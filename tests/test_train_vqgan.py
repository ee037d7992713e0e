"""VQGAN training on tiny data: the top stage, then the multi stage started from it; codebook stats logged."""

from __future__ import annotations

import json

import pytest
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


def tiny_config(tmp_path, cartoon):
    """The TINY config over four 40x48 training frames in tmp_path/data (written once), no validation set."""
    if not (tmp_path / "data").exists():
        for i, f in enumerate(cartoon(4, 40, 48, seed=0)):
            save_png_atomic(f, tmp_path / "data" / f"{i:04d}.png")
    cfg = tmp_path / "vq.toml"
    cfg.write_text(TINY.format(data=tmp_path / "data", val=""))
    return cfg


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

    # a multi-scale weight file as multi.init: training goes on from all of its tensors (a negligible LR here)
    again = tmp_path / "again"
    init = f"multi.init={multi / 'final.safetensors'}"
    args = ["train-vqgan", str(cfg), "--stage", "multi", "--out", str(again), "--set", init]
    assert main([*args, "--set", "multi.total_iter=1", "--set", "multi.base_lr=1e-12", "--set", "run.val_every=0"]) == 0
    state = ck.read_checkpoint(again / ck.LATEST)["models"]["g"]
    for name, want in model.state_dict().items():
        torch.testing.assert_close(state[name].float(), want.float(), atol=1e-5, rtol=0)
    assert main([*args, "--set", "model.n_embed=8", "--set", "multi.total_iter=1"]) == 2  # another model: refused


def test_dead_code_restarts_move_every_unused_code(tmp_path, cartoon):
    """restart_dead_codes=1: after each step, exactly the codes that step did not pick move onto encoder outputs."""
    cfg = tiny_config(tmp_path, cartoon)
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


FAST_SETS = ["model.codebook_dim=4", "model.l2_codes=true", "model.ema_decay=0.9", "model.kmeans_init=true"]


def tiny_task(tmp_path, cartoon, sets: list[str]):
    """A VQGANTask on the TINY config (no LPIPS, fp32), built directly, and its first four training samples."""
    from vqdsr_core.train.config import load_config
    from vqdsr_core.train.loop import Env
    from vqdsr_core.train.vqgan import VQGANTask

    cfg_file = tiny_config(tmp_path, cartoon)
    cfg = load_config(cfg_file, "vqgan", ["top.perceptual_weight=0", "top.disc_start=-1", *sets])
    task = VQGANTask(cfg, "top", Env(0, 1, 0, torch.device("cpu"), None))
    ds = task.dataset()
    return task, torch.stack([ds[i] for i in range(4)])


def nearest_code_distance(model: MultiScaleVQGAN, x01: torch.Tensor) -> tuple[float, int, float]:
    """Latents of x01 vs the codebook: (mean squared distance to the nearest code, distinct codes picked, largest
    distance of a used code from the (l2: normalised) mean of the latents that pick it)."""
    from vqdsr_core.models.quantize import assignment_sums, nearest_indices

    with torch.no_grad():
        z = torch.cat([v.permute(0, 2, 3, 1).reshape(-1, v.shape[1]) for v in model.encode(x01 * 2 - 1).values()])
        codes = model.quantize.codes.detach()
        idx = nearest_indices(z, codes)
        counts, sums = assignment_sums(z, idx, len(codes))
        used = counts > 0
        means = sums[used] / counts[used, None]
        if model.quantize.l2_codes:
            means = torch.nn.functional.normalize(means, dim=1)
        off = (codes[used] - means).norm(dim=1).max()
    return float(((z - codes[idx]) ** 2).sum(1).mean()), int(used.sum()), float(off)


@pytest.mark.parametrize("sets", [["model.kmeans_init=true"], FAST_SETS], ids=["plain", "fast"])
def test_kmeans_init_puts_codes_on_encoder_outputs(tmp_path, cartoon, sets):
    task, x01 = tiny_task(tmp_path, cartoon, sets)
    before, used_before, _ = nearest_code_distance(task.g, x01)
    n = task.kmeans_init()  # k-means of the latents of exactly these 4 samples (16 top-branch latents each)
    after, used_after, off = nearest_code_distance(task.g, x01)
    assert n == 4 * 16  # latents for 4 per code
    assert used_after == 16 > used_before and after < 0.5 * before, (before, after, used_before, used_after)
    assert off < 1e-4  # each code is the centroid of the latents that pick it (Lloyd converged)


def test_ema_codebook_is_not_in_the_optimizer_and_moves_to_assigned_latents(tmp_path, cartoon):
    from vqdsr_core.models.quantize import assignment_sums, nearest_indices

    task, x01 = tiny_task(tmp_path, cartoon, ["model.ema_decay=0.9"])
    q = task.g.quantize
    in_opt = {id(p) for group in task.optimizers["g"].param_groups for p in group["params"]}
    assert id(q.codebook) not in in_opt and q.codebook.requires_grad is False
    assert in_opt == {id(p) for p in task.g.parameters() if p is not q.codebook}  # everything else is trained
    batch = x01[:2]
    with torch.no_grad():  # the latents the training forward will see (no dropout: same weights, same values)
        z = task.g.encode(batch * 2 - 1)["top"]
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        idx = nearest_indices(flat, q.codes)
        counts, sums = assignment_sums(flat, idx, q.n_embed)
    before = q.codebook.detach().clone()
    task.train_step(batch, 0)
    assert q.codebook.grad is None
    hit = counts > 0
    # fresh EMA statistics: an assigned code jumps to the mean of its latents (Laplace smoothing aside)
    torch.testing.assert_close(q.codebook[hit], sums[hit] / counts[hit, None], rtol=1e-3, atol=1e-5)
    assert torch.equal(q.codebook[~hit], before[~hit]) and hit.sum() >= 2


def test_fast_options_top_then_multi(tmp_path, cartoon):
    """k-means init, EMA, factorised l2 codes and restarts together: both stages run, the files record the options."""
    cfg = tiny_config(tmp_path, cartoon)
    sets = [x for s in [*FAST_SETS, "top.restart_dead_codes=1", "multi.restart_dead_codes=1"] for x in ("--set", s)]
    sets += ["--set", "run.val_every=0", "--set", "top.perceptual_weight=0", "--set", "multi.perceptual_weight=0"]
    top, multi = tmp_path / "top", tmp_path / "multi"
    assert main(["train-vqgan", str(cfg), "--stage", "top", "--out", str(top), *sets]) == 0
    c = ck.read_checkpoint(top / ck.LATEST)
    assert {"codebook_dim": 4, "l2_codes": True, "ema_decay": 0.9}.items() <= c["export"]["config"].items()
    g_state = c["optimizers"]["g"]["state"]
    n_trained = sum(len(group["params"]) for group in c["optimizers"]["g"]["param_groups"])
    assert n_trained == sum(1 for n in c["models"]["g"] if "quantize.embedding" not in n and "ema_" not in n)
    assert len(g_state) <= n_trained
    rows = [json.loads(x) for x in (top / "metrics.jsonl").read_text().splitlines()]
    assert all(r["codes_restarted"] >= 0 for r in rows if r["kind"] == "train")
    args = ["train-vqgan", str(cfg), "--stage", "multi", "--out", str(multi), "--set", f"multi.init={top / ck.LATEST}"]
    sets += ["--set", "multi.draw_colour_weight=1"]
    assert main([*args, *sets, "--set", "multi.colour_weight=2", "--set", "multi.lr_schedule=cosine"]) == 0
    rows = [json.loads(x) for x in (multi / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"]
    # the block-mean colour terms, of the reconstruction and of a k-th-nearest draw, are in the loss
    assert all(r["l_colour"] > 0 and r["l_draw_colour"] > 0 for r in train)
    # cosine to 0 over the 2 steps (each row logs the LR of the next step): 2e-6 x batch 1, halved, then 0; the
    # shared modules at a quarter of it throughout
    assert [r["lr_g1"] for r in train] == pytest.approx([1e-6, 0.0], abs=1e-15)
    assert [r["lr_g0"] for r in train] == pytest.approx([0.25e-6, 0.0], abs=1e-15)
    assert not any("l_colour" in json.loads(x) for x in (top / "metrics.jsonl").read_text().splitlines())  # off: 0
    model, info = load_model(multi / "final.safetensors", arch="multiscale_vqgan")
    assert info.config["codebook_dim"] == 4 and model.quantize.l2_codes and model.quantize.ema_decay == 0.9
    out = model.degrade(torch.rand(1, 3, 16, 24), k_top=1, k_mid=2, k_bottom=9)
    assert out.shape == (1, 3, 16, 24)


def test_torchrun_fast_options_keep_ranks_identical(tmp_path, cartoon):
    """Each rank sees other latents: EMA statistics are summed over ranks, k-means and restarts come from rank 0."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for i, f in enumerate(cartoon(6, 40, 40, seed=4)):
        save_png_atomic(f, tmp_path / "data" / f"{i:04d}.png")
    cfg = tmp_path / "vq.toml"
    cfg.write_text(TINY.format(data=tmp_path / "data", val=""))
    out = tmp_path / "run"
    sets = [*FAST_SETS, "top.batch_size=1", "top.total_iter=3", "top.restart_dead_codes=2", "top.disc_start=-1",
            "top.perceptual_weight=0", "run.ckpt_every=0", "run.val_every=0", "run.sample_every=0",
            "run.tensorboard=false"]  # fmt: skip
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "vqdsr_core.cli", "train-vqgan", str(cfg), "--stage", "top", "--out", str(out)]  # fmt: skip
    for s in sets:
        cmd += ["--set", s]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "k-means" in r.stderr
    c = ck.read_checkpoint(out / ck.LATEST)
    prints = c["rank_fingerprints"]
    assert len(prints) == 2 and prints[0] == prints[1]  # codebook (an EMA one: no gradient sync) included


def test_resume_of_a_checkpoint_from_before_the_vqgan_schedule(tmp_path, cartoon):
    """VQGAN checkpoints written before its stages had an LR schedule hold no scheduler state: they resume."""
    cfg = tiny_config(tmp_path, cartoon)
    top = tmp_path / "top"
    args = ["train-vqgan", str(cfg), "--stage", "top", "--out", str(top), "--set", "run.val_every=0"]
    assert main([*args, "--set", "top.total_iter=1", "--set", "top.perceptual_weight=0"]) == 0
    old = ck.read_checkpoint(top / ck.LATEST)
    assert set(old["schedulers"]) == {"g", "d"}
    old["schedulers"] = {}  # as session-6 runs wrote them
    ck.save_checkpoint(top, old)
    assert main([*args, "--set", "top.total_iter=2", "--set", "top.perceptual_weight=0", "--resume"]) == 0
    c = ck.read_checkpoint(top / ck.LATEST)
    assert c["step"] == 2 and c["schedulers"]["g"]["last_epoch"] == 2
