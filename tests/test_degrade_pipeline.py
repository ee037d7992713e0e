"""The pipeline: determinism per seed, config validation, the VQ step with a small VQGAN, and the CLI commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vqdsr_core.degrade.blur import filter2d, gaussian_kernel
from vqdsr_core.degrade.pipeline import DegradationConfig, degrade_clip, make_pair, sample_params
from vqdsr_core.degrade.vq import keep_low_frequencies, sample_vq, vq_degrade


@pytest.fixture(scope="module")
def hr():
    from conftest import cartoon_frames

    return torch.from_numpy(cartoon_frames(5, 66, 70, seed=1)).permute(0, 3, 1, 2).float().div(255)


@pytest.fixture(scope="module")
def small_vqgan():
    vqgan = pytest.importorskip("vqdsr_core.models.vqgan")
    torch.manual_seed(0)
    model = vqgan.MultiScaleVQGAN(width=32, embed_dim=8, n_embed=64).eval()
    with torch.no_grad():  # spread the codes so that the k-th nearest one is really further away
        model.quantize.embedding.weight.normal_()
    return model


def test_make_pair_is_deterministic_per_seed(hr):
    cfg = DegradationConfig()
    lr, hr_out, params = make_pair(hr, 7, cfg)
    assert hr_out.shape == (5, 3, 64, 68) and lr.shape == (5, 3, 16, 17)  # HR mod-cropped to the scale
    assert torch.equal(lr, lr.mul(255).round().div(255))  # 8-bit LR
    lr2, _, params2 = make_pair(hr, 7, cfg)
    assert params == params2 and torch.equal(lr, lr2)
    lr3, _, params3 = make_pair(hr, 8, cfg)
    assert params3 != params and not torch.equal(lr3, lr)
    reloaded = json.loads(json.dumps(params))  # JSON-serialisable and re-appliable
    assert reloaded == params
    info: dict = {}
    assert torch.equal(degrade_clip(hr_out, reloaded, info=info), lr)
    assert len(info["codec_bytes"]) == 1 and info["codec_bytes"][0] > 0


def test_params_follow_the_config(hr):
    basic = sample_params(DegradationConfig(blur_prob=0, noise_prob=0, codec_prob=0), np.random.default_rng(0), 5)
    assert basic["blur"] is None and basic["noise"] is None and basic["codec"] is None and basic["vq"] is None
    x = hr[..., :64, :64]
    lr = degrade_clip(x, basic)
    down = torch.nn.functional.interpolate
    mode = basic["down"]["mode"]
    kw = {} if mode == "area" else {"align_corners": False, "antialias": True}
    want = down(x, size=(16, 16), mode=mode, **kw).clamp(0, 1).mul(255).round().div(255)
    torch.testing.assert_close(lr, want, atol=1e-6, rtol=0)  # only the downscale (and 8-bit rounding)
    full = sample_params(DegradationConfig(), np.random.default_rng(0))
    assert len(full["noise"]["sigma"]) == 15  # cfg.num_frames by default
    extras = DegradationConfig(analog_probs={"ringing": 1.0, "chroma_shift": 1.0})
    p = sample_params(extras, np.random.default_rng(0), 5)
    assert p["analog"]["ringing"] is not None and p["analog"]["aliasing"] is None
    assert degrade_clip(x, p).shape == (5, 3, 16, 16)


def test_config_validation_and_from_dict():
    cfg = DegradationConfig.from_dict(
        {"crf": [20, 30], "vq_k_bottom_levels": [[1, 5], [6, 9]], "vq_k_bottom_probs": [0.5, 0.5]}
    )
    assert cfg.crf == (20, 30) and cfg.vq_k_bottom_levels == ((1, 5), (6, 9))
    assert DegradationConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match=r"from_dict: unknown keys \['crf_range'\]"):
        DegradationConfig.from_dict({"crf_range": (1, 2)})
    with pytest.raises(ValueError, match="DegradationConfig: blur_prob"):
        DegradationConfig(blur_prob=1.5)
    with pytest.raises(ValueError, match="DegradationConfig: sample_codec: crf"):
        DegradationConfig(crf=(30.0, 20.0))
    with pytest.raises(ValueError, match="DegradationConfig: sample_down: probs"):
        DegradationConfig(down_probs=(0.5, 0.5))
    with pytest.raises(ValueError, match="DegradationConfig: sample_analog: unknown operators"):
        DegradationConfig(analog_probs={"vhs_tracking": 0.5})
    with pytest.raises(ValueError, match="DegradationConfig: sample_vq: k_mid"):
        DegradationConfig(vq_k_mid=(0, 3))
    DegradationConfig.old_media()  # the make-lq preset is valid


def test_pipeline_input_errors(hr):
    with pytest.raises(ValueError, match=r"make_pair: cfg\.vq is True but no vqgan"):
        make_pair(hr, 0, DegradationConfig(vq=True))
    with pytest.raises(ValueError, match="make_pair: clip"):
        make_pair(torch.rand(2, 3, 2, 2), 0)
    with pytest.raises(ValueError, match="degrade_clip: params are for 15 frames, the clip has 5"):
        degrade_clip(hr[..., :64, :64], sample_params(DegradationConfig(), np.random.default_rng(0)))
    with pytest.raises(ValueError, match="degrade_clip: params must come from sample_params"):
        degrade_clip(hr, {"blur": None})
    with pytest.raises(TypeError, match="sample_params: cfg"):
        sample_params({"crf": (1, 2)}, np.random.default_rng(0))  # type: ignore[arg-type]


def test_sample_vq_law():
    rng = np.random.default_rng(0)
    draws = [sample_vq(rng) for _ in range(3000)]
    assert {d["k_top"] for d in draws} == {1}
    assert {d["k_mid"] for d in draws} == set(range(1, 11))
    kb = np.array([d["k_bottom"] for d in draws])
    assert kb.min() == 1 and kb.max() == 50
    for (lo, hi), p in zip(((1, 15), (16, 30), (31, 50)), (0.3, 0.4, 0.3)):
        assert np.mean((kb >= lo) & (kb <= hi)) == pytest.approx(p, abs=0.03)
    with pytest.raises(ValueError, match="sample_vq: k_bottom_probs"):
        sample_vq(rng, k_bottom_probs=(0.5, 0.5))
    assert {d["keep_colour"] for d in draws} == {0.0}
    assert sample_vq(rng, keep_colour=2)["keep_colour"] == 2.0
    for bad in (-1, 17, "2", True):
        with pytest.raises(ValueError, match="sample_vq: keep_colour must be"):
            sample_vq(rng, keep_colour=bad)


def test_keep_colour_keeps_the_inputs_low_pass_and_the_reconstructions_detail(small_vqgan):
    from conftest import cartoon_frames

    x = torch.from_numpy(cartoon_frames(2, 48, 40, seed=4)).permute(0, 3, 1, 2).float().div(255)
    params = {"k_top": 1, "k_mid": 3, "k_bottom": 10}
    raw = vq_degrade(x, small_vqgan, params)
    kept = vq_degrade(x, small_vqgan, {**params, "keep_colour": 2.0})
    low = gaussian_kernel(13, 2.0, 2.0)

    def lowpass_error(y):
        return float((filter2d(y, low) - filter2d(x, low)).abs().mean())

    assert lowpass_error(kept) < 0.1 * lowpass_error(raw)  # colours and shading are the input's
    # ... the finer detail is the reconstruction's, up to clamping to [0, 1] (this random model's detail is strong)
    detail = torch.stack([(y - filter2d(y, low)).flatten() for y in (raw, kept)])
    assert float(torch.corrcoef(detail)[0, 1]) > 0.9
    assert torch.equal(keep_low_frequencies(raw, x, 0.0), raw)
    assert torch.equal(vq_degrade(x, small_vqgan, {**params, "keep_colour": 0}), raw)
    with pytest.raises(ValueError, match="vq_degrade: keep_colour must be"):
        vq_degrade(x, small_vqgan, {**params, "keep_colour": -2})


def test_vq_degradation_gets_stronger_as_k_grows(small_vqgan):
    from conftest import cartoon_frames

    x = torch.from_numpy(cartoon_frames(1, 32, 32, seed=2)).permute(0, 3, 1, 2).float().div(255)
    ks = [(1, 1, 1), (1, 3, 10), (1, 10, 50)]
    outs = [vq_degrade(x, small_vqgan, {"k_top": a, "k_mid": b, "k_bottom": c}) for a, b, c in ks]
    assert all(o.shape == x.shape and torch.equal(o, o.mul(255).round().div(255)) for o in outs)
    dist = [float(((o - outs[0]) ** 2).mean()) for o in outs]
    assert dist[0] == 0 < dist[1] < dist[2]
    # in latent space the chosen codes move away from the encoder output as k grows
    with torch.no_grad():
        z = small_vqgan.encode(x * 2 - 1)
        err = [
            float((small_vqgan.quantize_latents(z, {"top": 1, "mid": b, "bot": c})["bot"] - z["bot"]).pow(2).mean())
            for _, b, c in ks
        ]
    assert err[0] < err[1] < err[2]
    again = vq_degrade(x, small_vqgan, {"k_top": 1, "k_mid": 10, "k_bottom": 50})
    assert torch.equal(again, outs[2])
    with pytest.raises(ValueError, match="vq_degrade: params lack"):
        vq_degrade(x, small_vqgan, {"k_top": 1})


def test_pipeline_with_vq_and_contrast(small_vqgan):
    from conftest import cartoon_frames

    hr = torch.from_numpy(cartoon_frames(2, 64, 64, seed=4)).permute(0, 3, 1, 2).float().div(255)
    cfg = DegradationConfig(vq=True, vq_contrast=True, vq_k_bottom_levels=((40, 50),), vq_k_bottom_probs=(1.0,))
    lr, _, params = make_pair(hr, 3, cfg, small_vqgan)
    assert lr.shape == (2, 3, 16, 16) and 40 <= params["vq"]["k_bottom"] <= 50
    assert params["contrast"] == params["vq"]["k_bottom"]
    plain = degrade_clip(hr, {**params, "contrast": None}, small_vqgan)
    assert float(lr.std()) < float(plain.std())  # lower contrast
    with pytest.raises(ValueError, match=r"make_pair: a vqgan was given but cfg\.vq is False"):
        make_pair(hr, 3, DegradationConfig(), small_vqgan)
