"""Two-process DDP on CPU (gloo over 127.0.0.1) through torchrun: ranks stay identical, rank 0 checkpoints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from vqdsr_core.data.clips import save_png_atomic
from vqdsr_core.train import checkpoint as ck
from vqdsr_core.weights import tensors_sha256

ROOT = Path(__file__).resolve().parents[1]


def test_torchrun_two_processes_gloo(tmp_path, cartoon):
    for c in range(2):
        for i, f in enumerate(cartoon(5, 40, 40, seed=c)):
            save_png_atomic(f, tmp_path / "data" / f"clip{c}" / f"{i:04d}.png")
    out = tmp_path / "run"
    sets = {
        "data.train": str(tmp_path / "data"), "data.val": "", "data.num_frame": 3, "data.gt_size": 32,
        "model.num_feat": 8, "model.num_block": "[1, 1, 1]", "net.batch_size": 1, "net.total_iter": 3,
        "net.usm_radius": 5,
        "degrade.codec_prob": 0, "run.num_workers": 0, "run.threads": 1, "run.log_every": 1, "run.ckpt_every": 2,
        "run.val_every": 0, "run.sample_every": 0, "run.progress": "false", "run.tensorboard": "false",
    }  # fmt: skip
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "vqdsr_core.cli", "train-vsr", str(ROOT / "training/cpu/vsr.toml"), "--stage", "net",
           "--out", str(out), "--set", "run.precision=fp32"]  # fmt: skip
    for k, v in sets.items():
        cmd += ["--set", f"{k}={v}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "x2 (DDP): batch 1/process -> global batch 2" in r.stderr
    for name in (ck.PREVIOUS, ck.LATEST):  # step 2 (periodic) and step 3 (final)
        c = ck.read_checkpoint(out / name)
        assert c["world_size"] == 2 and len(c["rng"]) == 2
        prints = c["rank_fingerprints"]
        assert len(prints) == 2 and prints[0] == prints[1]  # both ranks hold the same weights
        own = {f"{k}.{n}": v for k, sd in c["models"].items() for n, v in sd.items() if "running" not in n}
        own = {k: v for k, v in own.items() if "num_batches_tracked" not in k}  # parameters only
        assert tensors_sha256(own) == prints[0]
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]  # one writer (rank 0)


def test_torchrun_vqgan_code_restarts_keep_ranks_identical(tmp_path, cartoon):
    """Each rank sees other latents; the restarted codes come from rank 0 so the codebooks stay equal."""
    for i, f in enumerate(cartoon(6, 40, 40, seed=4)):
        save_png_atomic(f, tmp_path / "data" / f"{i:04d}.png")
    out = tmp_path / "run"
    sets = {
        "data.train": f'["{tmp_path / "data"}"]', "data.val": "", "data.crop": 32, "model.width": 32,
        "model.embed_dim": 8, "model.n_embed": 16, "top.batch_size": 1, "top.total_iter": 2,
        "top.restart_dead_codes": 1, "top.perceptual_weight": 0, "top.d_ndf": 8, "run.num_workers": 0,
        "run.threads": 1, "run.log_every": 1, "run.ckpt_every": 0, "run.val_every": 0, "run.sample_every": 0,
        "run.progress": "false", "run.tensorboard": "false", "run.precision": "fp32",
    }  # fmt: skip
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "vqdsr_core.cli", "train-vqgan", str(ROOT / "training/cpu/vqgan.toml"), "--stage", "top",
           "--out", str(out)]  # fmt: skip
    for k, v in sets.items():
        cmd += ["--set", f"{k}={v}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(row["codes_restarted"] > 0 for row in rows if row["kind"] == "train")
    prints = ck.read_checkpoint(out / ck.LATEST)["rank_fingerprints"]
    assert len(prints) == 2 and prints[0] == prints[1]
