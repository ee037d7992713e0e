"""Weight files: round trip, strict architecture/shape checks, corruption and truncation errors, bundled defaults."""

import json

import pytest
import torch

from vqdsr_core import weights
from vqdsr_core.models.vsr import RecurrentVSRNet
from vqdsr_core.weights import WeightsError, load_model, read_weights, save_weights


@pytest.fixture
def vsr_file(tmp_path):
    torch.manual_seed(0)
    net = RecurrentVSRNet()
    path = save_weights(tmp_path / "vsr.safetensors", net, arch="vqdsr_vsr", config={}, extra={"card": "test"})
    return net, path


def test_round_trip_exact(vsr_file):
    net, path = vsr_file
    loaded, info = load_model(path, arch="vqdsr_vsr")
    assert info.arch == "vqdsr_vsr" and info.extra == {"card": "test"}
    for (k, a), (k2, b) in zip(net.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)
    assert not loaded.training


def test_fp16_storage_loads_into_fp32_model(tmp_path):
    net = RecurrentVSRNet()
    path = save_weights(tmp_path / "h.safetensors", net, arch="vqdsr_vsr", config={}, dtype=torch.float16)
    assert path.stat().st_size < 3.2e6  # 1.47M params * 2 bytes + header
    loaded, _ = load_model(path)
    w = next(loaded.parameters())
    assert w.dtype == torch.float32
    torch.testing.assert_close(w, next(net.parameters()).half().float())


def test_wrong_architecture_is_refused(vsr_file):
    _, path = vsr_file
    with pytest.raises(WeightsError, match=r"holds a 'vqdsr_vsr' model; expected animesr_vsr"):
        load_model(path, arch="animesr_vsr")


def test_shape_mismatch_names_file_and_tensor(tmp_path):
    # a feedback net's first conv (121 in-channels) saved under the no-feedback name
    state = RecurrentVSRNet(feedback=True).state_dict()
    path = save_weights(tmp_path / "bad.safetensors", state, arch="vqdsr_vsr", config={})
    with pytest.raises(WeightsError) as e:
        load_model(path)
    msg = str(e.value)
    assert "bad.safetensors" in msg and "conv_s1_first.weight" in msg and "wrong shape" in msg


def test_missing_and_unexpected_tensors(tmp_path):
    state = RecurrentVSRNet().state_dict()
    state.pop("trunk.fusion.2.bias")
    state["extra.weight"] = torch.zeros(1)
    path = save_weights(tmp_path / "x.safetensors", state, arch="vqdsr_vsr", config={})
    with pytest.raises(WeightsError, match=r"1 missing .*fusion\.2\.bias.*1 unexpected .*extra\.weight"):
        load_model(path)


def test_corrupted_bytes_detected(vsr_file):
    _, path = vsr_file
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # flip bits inside the last tensor
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="checksum mismatch"):
        read_weights(path)


def test_truncated_file_detected(vsr_file):
    _, path = vsr_file
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(WeightsError, match="corrupted or truncated"):
        read_weights(path)


def test_foreign_safetensors_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(WeightsError, match="not a vsvqdsr weight file"):
        read_weights(path)


def test_bad_config_is_a_weights_error(tmp_path):
    path = save_weights(tmp_path / "c.safetensors", {}, arch="vqdsr_vsr", config={"no_such_arg": 1})
    with pytest.raises(WeightsError, match="bad config"):
        load_model(path)


def test_missing_file(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        read_weights(tmp_path / "nope.safetensors")


def test_metadata_is_plain_json(vsr_file):
    _, path = vsr_file
    _, info = read_weights(path)
    assert json.loads(json.dumps(info.config)) == {}
    assert len(info.sha256) == 64


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(weights.os, "replace", boom)
    with pytest.raises(OSError):
        weights.atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # no temp file left behind


def test_bundled_missing_gives_guidance(monkeypatch, tmp_path):
    monkeypatch.setattr(weights, "BUNDLED_DIR", tmp_path)
    with pytest.raises(WeightsError, match="no bundled default vsr model"):
        weights.resolve_weights(None, "vsr")


def test_cache_dir_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("VSVQDSR_CACHE", str(tmp_path / "c"))
    assert weights.cache_dir() == tmp_path / "c" and (tmp_path / "c").is_dir()
