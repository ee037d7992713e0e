"""``vqdsr check-vqgan`` / ``evaluation.vqgan_check``: codebook use counted right, scores and picture written."""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from vqdsr_core.cli import main
from vqdsr_core.data.clips import save_png_atomic
from vqdsr_core.evaluation.vqgan_check import check_vqgan
from vqdsr_core.models.vqgan import MultiScaleVQGAN
from vqdsr_core.weights import save_weights

CFG = {"width": 32, "embed_dim": 8, "n_embed": 16}


def test_codes_used_counts_the_nearest_codes_of_every_branch(cartoon):
    torch.manual_seed(0)
    model = MultiScaleVQGAN(**CFG).eval()
    images = [torch.from_numpy(f).permute(2, 0, 1).float() / 255 for f in cartoon(3, 24, 32, seed=1)]
    with torch.no_grad():  # spread the codebook over real latents so that several codes are picked
        z = model.encode(torch.stack(images) * 2 - 1)
        flat = torch.cat([v.permute(0, 2, 3, 1).reshape(-1, 8) for v in z.values()])
        model.quantize.embedding.weight.copy_(flat[torch.linspace(0, len(flat) - 1, 16).long()])
    report = check_vqgan(model, images)
    for name, v in z.items():  # independent count: brute-force nearest code over every latent of the branch
        lat = v.permute(0, 2, 3, 1).reshape(-1, 8)
        want = torch.cdist(lat.double(), model.quantize.embedding.weight.double()).argmin(1).unique().numel()
        assert report["branches"][name]["codes_used"] == want
        assert 1 <= report["branches"][name]["perplexity"] <= want + 1e-4
    assert report["images"] == 3 and np.isfinite(report["psnr_y_k1"])
    with torch.no_grad():  # RGB PSNR of the k = 1 reconstruction, computed here independently
        rgb = []
        for img in images:
            out = (model(img[None] * 2 - 1)[0].float().clamp(-1, 1) + 1) / 2
            rgb.append(-10 * np.log10(float(((out - img[None]) ** 2).double().mean())))
    assert abs(report["psnr_rgb_k1"] - np.mean(rgb)) < 1e-3
    want = {"top=1,mid=2,bottom=10", "top=1,mid=5,bottom=16", "top=1,mid=10,bottom=16"}  # k <= n_embed
    assert set(report["psnr_y_degraded"]) == want
    assert "psnr_y_k1_keep_colour" not in report
    kept = check_vqgan(model, images, keep_colour=2.0)  # the untrained model's colours replaced by the input's
    assert kept["keep_colour"] == 2.0 and kept["psnr_y_k1_keep_colour"] > report["psnr_y_k1"] + 3
    for name, db in kept["psnr_y_degraded"].items():
        assert db > report["psnr_y_degraded"][name] + 3


def test_command_prints_json_and_writes_the_strip(tmp_path, cartoon, capsys):
    torch.manual_seed(0)
    weights = save_weights(tmp_path / "vq.safetensors", MultiScaleVQGAN(**CFG), arch="multiscale_vqgan",
                           config=CFG)  # fmt: skip
    for i, f in enumerate(cartoon(4, 40, 48, seed=2)):
        save_png_atomic(f, tmp_path / "frames" / "clip" / f"{i:04d}.png")
    strip = tmp_path / "strip.png"
    assert main(["check-vqgan", str(weights), str(tmp_path / "frames"), "--images", "3", "--strip", str(strip)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 3 and set(report["branches"]) == {"top", "mid", "bot"}
    w, h = Image.open(strip).size
    assert (w, h) == (5 * 40, 40 * min(3, report["images"]))  # input | k=1 | three draws, one row per frame
    assert main(["check-vqgan", str(weights), str(tmp_path / "none")]) == 2
    assert "no images under" in capsys.readouterr().err


def test_fit_vq_colour_writes_a_locked_file_whose_draws_keep_area_colours(tmp_path, cartoon, capsys):
    from vqdsr_core.weights import load_model

    torch.manual_seed(0)
    weights = save_weights(tmp_path / "vq.safetensors", MultiScaleVQGAN(**CFG), arch="multiscale_vqgan", config=CFG)
    for i, f in enumerate(cartoon(6, 40, 48, seed=3)):
        save_png_atomic(f, tmp_path / "frames" / "clip" / f"{i:04d}.png")
    out = tmp_path / "locked.safetensors"
    assert main(["fit-vq-colour", str(weights), str(tmp_path / "frames"), "--out", str(out), "--images", "6"]) == 0
    fit = json.loads(capsys.readouterr().out)
    assert fit["frames"] == 6 and set(fit["r2"]) == {"top", "mid", "bot"}
    locked, info = load_model(out, arch="multiscale_vqgan")
    plain, _ = load_model(weights, arch="multiscale_vqgan")
    assert info.config["colour_lock"] and "colour_lock" in info.extra and locked.colour_basis.abs().sum() > 0
    images = [torch.from_numpy(f).permute(2, 0, 1).float() / 255 for f in cartoon(3, 24, 32, seed=1)]
    x = torch.stack(images)
    assert torch.equal(locked.degrade(x), plain.degrade(x))  # k = 1: the same network, the same reconstruction
    assert torch.equal(
        locked.degrade(x, k_mid=5, k_bottom=12, colour_lock=False), plain.degrade(x, k_mid=5, k_bottom=12)
    )
    on, off = check_vqgan(locked, images), check_vqgan(locked, images, colour_lock=False)
    assert on["colour_lock"] and not off["colour_lock"] and on["psnr_y_k1"] == off["psnr_y_k1"]
    assert set(on["psnr_rgb_area_degraded"]) == set(on["psnr_y_degraded"])
    assert on["psnr_rgb_area_degraded"] != off["psnr_rgb_area_degraded"]
    assert main(["fit-vq-colour", str(weights), str(tmp_path / "frames"), "--out", str(weights)]) == 2
    assert "must not be the input file" in capsys.readouterr().err
