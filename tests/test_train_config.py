"""Training configs, presets and checkpoint files: checked keys, clear errors before work, atomic saves."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from vqdsr_core.cli import main
from vqdsr_core.train import checkpoint as ck
from vqdsr_core.train.config import ConfigError, check_paths, load_config, parse_override

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "path", sorted((ROOT / "training").glob("*/*.toml")), ids=lambda p: f"{p.parent.name}/{p.name}"
)
def test_presets_load(path):
    kind = "vqgan" if "vqgan" in path.name else "vsr"
    cfg = load_config(path, kind)
    stages = ("top", "multi") if kind == "vqgan" else ("net", "gan")
    for st in stages:
        assert cfg[st].batch_size >= 1 and cfg[st].total_iter >= 1
    if kind == "vsr":
        from vqdsr_core.train.vsr import degradation_config

        assert degradation_config(cfg, "net").vq is False
        assert degradation_config(cfg, "gan").vq is True  # the GAN stage names a VQGAN


def test_paper_settings():
    vq = load_config(ROOT / "training/paper/vqgan.toml", "vqgan")
    assert (vq["top"].base_lr, vq["top"].batch_size, vq["data"].crop) == (4.5e-6, 4, 256)
    assert (vq["multi"].base_lr, vq["multi"].batch_size, vq["multi"].top_lr_weight) == (2e-6, 3, 0.25)
    assert (vq["multi"].disc_start, vq["multi"].disc_weight, vq["multi"].betas) == (10000, 0.8, [0.5, 0.9])
    vsr = load_config(ROOT / "training/paper/vsr.toml", "vsr")
    assert (vsr["data"].num_frame, vsr["data"].gt_size) == (15, 256)
    assert (vsr["net"].lr, vsr["gan"].lr, vsr["net"].ema, vsr["net"].betas) == (1e-4, 5e-5, 0.999, [0.9, 0.99])
    assert vsr["gan"].perceptual_layers == {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_3": 1, "conv4_3": 1, "conv5_3": 1}


def test_cpu_presets_make_bundles_under_30_mb():
    """The bundled defaults are trained with the CPU presets; both fp16 files together must stay under 30 MB."""
    from vqdsr_core.models.vqgan import MultiScaleVQGAN
    from vqdsr_core.models.vsr import RecurrentVSRNet

    vq = load_config(ROOT / "training/cpu/vqgan.toml", "vqgan")["model"]
    vs = load_config(ROOT / "training/cpu/vsr.toml", "vsr")["model"]
    with torch.device("meta"):
        vqgan = MultiScaleVQGAN(width=vq.width, embed_dim=vq.embed_dim, n_embed=vq.n_embed)
        vsr = RecurrentVSRNet(num_feat=vs.num_feat, num_block=tuple(vs.num_block))
    n = sum(p.numel() for m in (vqgan, vsr) for p in m.parameters())
    assert 2 * n < 30e6, f"{2 * n / 1e6:.1f} MB of fp16 weights"


def test_overrides_typed():
    assert parse_override("net.lr=2e-4") == (["net", "lr"], 2e-4)
    assert parse_override("data.val=some/dir") == (["data", "val"], "some/dir")  # bare string
    cfg = load_config(None, "vsr", ["net.lr=3", "data.train=x", "gan.perceptual_layers.conv1_2=0.5", "run.seed=7"])
    assert cfg["net"].lr == 3.0 and isinstance(cfg["net"].lr, float)
    assert cfg["data"].train == ["x"] and cfg["run"].seed == 7
    assert cfg["gan"].perceptual_layers["conv1_2"] == 0.5 and cfg["gan"].perceptual_layers["conv5_3"] == 1.0


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("net.lrr=1", "unknown key net.lrr"),
        ("nett.lr=1", r"unknown table \[nett\]"),
        ("net.batch_size=2.5", "net.batch_size .* must be an integer"),
        ("net.usm=1", "must be true/false"),
        ("run.seed", "expects section.key=value"),
    ],
)
def test_bad_override(text, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, "vsr", [text])


def test_bad_file(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('kind = "vsr"\n[net]\nlearning_rate = 1e-4\n')
    with pytest.raises(ConfigError, match=r"unknown key net.learning_rate in .*c.toml"):
        load_config(p, "vsr")
    p.write_text('kind = "vsr"\n')
    with pytest.raises(ConfigError, match="is a 'vsr' config; this command trains 'vqgan'"):
        load_config(p, "vqgan")
    p.write_text("[net\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(p, "vsr")


def test_missing_data_is_an_error_before_work(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train-vsr", str(ROOT / "training/cpu/vsr.toml"), "--stage", "net", "--out", str(out),
               "--set", f"data.train={tmp_path / 'nope'}"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "data.train folder" in err and "does not exist" in err
    assert not out.exists()
    rc = main(["train-vqgan", str(ROOT / "training/cpu/vqgan.toml"), "--stage", "top", "--out", str(out),
               "--set", "top.nonsense=1"])  # fmt: skip
    assert rc == 2 and "unknown key top.nonsense" in capsys.readouterr().err
    cfg = load_config(None, "vqgan", [f"data.train={tmp_path}"])
    with pytest.raises(ConfigError, match=r"multi\.init"):
        check_paths(cfg, "vqgan", "multi")
    for key in ("still_prob", "hold_prob"):
        cfg = load_config(None, "vsr", [f"data.train={tmp_path}", f"data.{key}=1.5"])
        with pytest.raises(ConfigError, match=rf"data\.{key} must be a probability"):
            check_paths(cfg, "vsr", "net")


def test_checkpoint_rotation_and_crash_safety(tmp_path, monkeypatch):
    ck.save_checkpoint(tmp_path, {"step": 1, "w": torch.ones(3)})
    ck.save_checkpoint(tmp_path, {"step": 2, "w": torch.ones(3) * 2})
    assert ck.read_checkpoint(tmp_path / ck.LATEST)["step"] == 2
    assert ck.read_checkpoint(tmp_path / ck.PREVIOUS)["step"] == 1

    def crash(_fd):  # the disk fails while the third checkpoint is being written
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError):
        ck.save_checkpoint(tmp_path, {"step": 3})
    monkeypatch.undo()
    assert ck.find_resume(tmp_path)["step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [ck.LATEST, ck.PREVIOUS]  # no temp file left behind
    # a truncated latest.pt (e.g. copied half-way) falls back to previous.pt
    data = (tmp_path / ck.LATEST).read_bytes()
    (tmp_path / ck.LATEST).write_bytes(data[: len(data) // 2])
    assert ck.find_resume(tmp_path)["step"] == 1
    with pytest.raises(ck.CheckpointError, match="not a vqdsr training checkpoint"):
        torch.save({"x": 1}, tmp_path / "other.pt")
        ck.read_checkpoint(tmp_path / "other.pt")


def test_cpu_presets_pick_the_fast_precision(monkeypatch):
    """The CPU presets say 'auto': bf16 autocast only where the CPU runs bf16 natively (emulated bf16 is slow)."""
    from vqdsr_core import device
    from vqdsr_core.train.loop import setup_env

    for name, kind in (("vsr", "vsr"), ("vqgan", "vqgan")):
        precision = load_config(ROOT / f"training/cpu/{name}.toml", kind)["run"].precision
        assert precision == "auto", name
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: False)
    assert setup_env("cpu", "auto").amp_dtype is None
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)
    assert setup_env("cpu", "auto").amp_dtype == torch.bfloat16
