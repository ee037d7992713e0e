"""Codec round trips through PyAV (real compression, profiles, MPEG-2/4, failures) and the composite round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vqdsr_core.degrade import analog, codec
from vqdsr_core.degrade.codec import CodecError, apply_codec, decode_bitstream, encode_frames, roundtrip, sample_codec


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / ((a - b) ** 2).mean()))


@pytest.fixture(scope="module")
def clip():
    from conftest import cartoon_frames

    rng = np.random.default_rng(0)
    frames = cartoon_frames(10, 64, 96, seed=3).astype(np.float32)
    frames += rng.normal(0, 4, frames.shape)  # some texture, so the rate control has work to do
    return torch.from_numpy(np.clip(frames, 0, 255)).permute(0, 3, 1, 2).div(255).contiguous()


def test_h264_really_compresses_and_crf_controls_it(clip):
    sizes, quality = [], []
    for crf in (18.0, 26.0, 35.0):
        y, size = roundtrip(clip, {"codec": "h264", "crf": crf, "profile": "high"})
        assert y.shape == clip.shape and y.dtype == clip.dtype
        assert torch.equal(y, y.mul(255).round().div(255))  # decoded 8-bit frames
        sizes.append(size)
        quality.append(psnr(y, clip))
    raw = clip.numel()  # bytes of the 8-bit RGB clip
    assert sizes[0] > sizes[1] > sizes[2] and sizes[0] < raw / 4
    assert quality[0] > quality[1] > quality[2] and quality[0] - quality[2] > 3
    assert quality[2] < 35  # lossy, not a pass-through


@pytest.mark.parametrize("profile,name", [("baseline", "Baseline"), ("main", "Main"), ("high", "High")])
def test_h264_profile_is_honoured_in_the_bitstream(clip, profile, name):
    frames = codec.to_uint8(clip)
    data = encode_frames(frames, "h264", crf=23.0, profile=profile)
    assert data[:4] == b"\x00\x00\x00\x01"  # Annex-B start code
    out, prof = decode_bitstream(data, "h264")
    assert name in prof and out.shape == frames.shape


@pytest.mark.parametrize("name,start", [("mpeg2", b"\x00\x00\x01\xb3"), ("mpeg4", b"\x00\x00\x01\xb0")])
def test_mpeg2_and_mpeg4_round_trip(clip, name, start):
    low, size_low = roundtrip(clip, {"codec": name, "qscale": 31})
    high, size_high = roundtrip(clip, {"codec": name, "qscale": 2})
    assert low.shape == clip.shape and size_low < size_high
    assert 15 < psnr(low, clip) < psnr(high, clip) < 45
    frames = codec.to_uint8(clip)
    data = encode_frames(frames, name, bit_rate=200_000)
    assert data[:4] == start  # sequence header / visual object sequence start code
    out, prof = decode_bitstream(data, name)
    assert prof == {"mpeg2": "Main", "mpeg4": "Advanced Simple Profile"}[name]  # B-frames: MPEG-4 ASP
    err = ((out[:, None].astype(float) - frames[None].astype(float)) ** 2).mean(axis=(2, 3, 4))  # (decoded, input)
    assert (err.argmin(axis=1) == np.arange(len(frames))).all()  # B-frame reordering undone: display order


def test_odd_sizes_and_generations(clip):
    odd = clip[:, :, :63, :95]
    y, _ = roundtrip(odd, {"codec": "h264", "crf": 20.0, "profile": "main"})
    assert y.shape == odd.shape and psnr(y, odd) > 25
    params = {"generations": [{"codec": "mpeg2", "qscale": 10}, {"codec": "h264", "crf": 30.0, "profile": "high"}]}
    two, sizes = apply_codec(clip, params)
    one, _ = apply_codec(clip, {"generations": params["generations"][:1]})
    assert len(sizes) == 2 and all(s > 0 for s in sizes)
    assert psnr(two, clip) < psnr(one, clip)


def test_codec_failure_raises_after_one_counted_retry(clip, monkeypatch):
    real = codec.decode_bitstream
    monkeypatch.setattr(codec, "decode_bitstream", lambda data, c, **kw: (real(data, c, **kw)[0][:-1], None))
    before = codec.STATS["retries"]
    with pytest.raises(CodecError, match="decoded 9 frames, expected 10"):
        roundtrip(clip, {"codec": "h264", "crf": 23.0, "profile": "high"})
    assert codec.STATS["retries"] == before + 1


def test_sample_codec_laws_and_errors():
    rng = np.random.default_rng(0)
    gens = [sample_codec(rng)["generations"] for _ in range(2000)]
    assert all(len(g) == 1 and g[0]["codec"] == "h264" for g in gens)
    crf = np.array([g[0]["crf"] for g in gens])
    assert 18 <= crf.min() < 18.2 and 34.8 < crf.max() <= 35
    prof = [g[0]["profile"] for g in gens]
    for p, want in zip(("baseline", "main", "high"), (0.1, 0.2, 0.7)):
        assert prof.count(p) / len(prof) == pytest.approx(want, abs=0.03)
    multi = sample_codec(rng, codecs=("mpeg2", "mpeg4"), codec_probs=(0.5, 0.5), generations=(2, 3))
    assert 2 <= len(multi["generations"]) <= 3 and all(4 <= g["qscale"] <= 31 for g in multi["generations"])
    with pytest.raises(ValueError, match="sample_codec: codecs"):
        sample_codec(rng, codecs=("av1",), codec_probs=(1.0,))
    with pytest.raises(ValueError, match="sample_codec: crf"):
        sample_codec(rng, crf=(35.0, 18.0))
    with pytest.raises(ValueError, match=r"codec\.roundtrip: generation"):
        roundtrip(torch.rand(2, 3, 8, 8), {"codec": "divx"})


# ---- composite -----------------------------------------------------------------------------------------------


def _has_composite() -> bool:
    try:
        import vapoursynth as vs
    except ImportError:
        return False
    return hasattr(vs.core, "composite")


@pytest.mark.skipif(not _has_composite(), reason="needs VapourSynth with the vapoursynth-composite plugin")
@pytest.mark.parametrize("standard,fit", [("ntsc", "scale"), ("pal", "pad")])
def test_composite_round_trip_changes_chroma_near_edges(standard, fit):
    x = torch.full((2, 3, 96, 128), 0.5)
    x[:, :, :, 40:80] = torch.tensor([0.8, 0.2, 0.2]).view(3, 1, 1)  # a red bar: two sharp colour edges
    y = analog.composite(x, {"standard": standard, "dimensions": 1, "fit": fit})
    assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1
    dc = (analog.rgb_to_ycbcr(y)[:, 1:] - analog.rgb_to_ycbcr(x)[:, 1:]).abs().mean(dim=(0, 1, 2))  # per column
    near = torch.cat([dc[36:44], dc[76:84]]).mean()
    flat = torch.cat([dc[8:24], dc[52:68], dc[100:120]]).mean()
    assert near > 3 * flat and near > (0.02 if fit == "pad" else 0.004)  # scaled: artefacts shrink with the clip
    assert psnr(y, x) > 15  # still the same picture
    assert torch.equal(analog.composite(x, {"standard": standard, "dimensions": 1, "fit": fit}), y)


def test_composite_input_errors():
    with pytest.raises(ValueError, match=r"analog\.composite: standard"):
        analog.composite(torch.rand(1, 3, 16, 16), {"standard": "secam"})
    if _has_composite():
        with pytest.raises(ValueError, match=r"analog\.composite: fit='pad' needs"):
            analog.composite(torch.rand(1, 3, 600, 64), {"standard": "pal", "fit": "pad"})
