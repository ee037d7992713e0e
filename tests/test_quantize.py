"""VectorQuantizer and the k-th-nearest lookup: brute-force agreement, chunking, STE, loss, errors."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from vqdsr_core.models import quantize as qmod
from vqdsr_core.models.quantize import VectorQuantizer, code_usage, kth_nearest_indices, nearest_indices


def brute_kth(z: torch.Tensor, codebook: torch.Tensor, k: int) -> torch.Tensor:
    """Reference: full distance matrix in float64, sort each row, take column k-1."""
    d = torch.cdist(z.double(), codebook.double()) ** 2
    return d.argsort(dim=1, stable=True)[:, k - 1]


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(1000, 8, generator=g), torch.randn(64, 8, generator=g)


@pytest.mark.parametrize("k", [1, 2, 7, 33, 64])
def test_kth_nearest_matches_brute_force(data, k):
    z, cb = data
    assert torch.equal(kth_nearest_indices(z, cb, k), brute_kth(z, cb, k))


def test_kth_distance_grows_with_k(data):
    z, cb = data
    d = [((z - cb[kth_nearest_indices(z, cb, k)]) ** 2).sum(1) for k in (1, 2, 10, 64)]
    for near, far in itertools.pairwise(d):
        assert (far >= near - 1e-5).all() and (far > near).any()


@pytest.mark.parametrize("k", [1, 5])
def test_chunking_gives_identical_results(data, k):
    z, cb = data
    full = kth_nearest_indices(z, cb, k, chunk=len(z))
    for chunk in (3, 7, 128, 999):
        assert torch.equal(kth_nearest_indices(z, cb, k, chunk=chunk), full)
    assert torch.equal(nearest_indices(z, cb, chunk=13), nearest_indices(z, cb, chunk=len(z)))


def test_distance_blocks_are_bounded(data, monkeypatch):
    z, cb = data
    shapes = []
    real = qmod.squared_distances

    def spy(zc, codebook):
        shapes.append(tuple(zc.shape))
        return real(zc, codebook)

    monkeypatch.setattr(qmod, "squared_distances", spy)
    kth_nearest_indices(z, cb, 3, chunk=300)
    assert shapes and max(s[0] for s in shapes) <= 300 and sum(s[0] for s in shapes) == len(z)


def test_k1_equals_nearest_lookup():
    torch.manual_seed(1)
    vq = VectorQuantizer(50, 6)
    z = torch.randn(2, 6, 5, 7) * 0.05
    zq, _, idx = vq(z)
    assert idx.shape == (2, 5, 7)
    z_flat = z.permute(0, 2, 3, 1).reshape(-1, 6)
    assert torch.equal(kth_nearest_indices(z_flat, vq.embedding.weight.detach(), 1), idx.reshape(-1))
    assert torch.equal(idx.reshape(-1), brute_kth(z_flat, vq.embedding.weight.detach(), 1))
    assert torch.allclose(vq.kth_nearest(z, 1), zq, atol=1e-6)


@pytest.mark.parametrize("k", [0, -1, 65, 1.0, True, "2"])
def test_bad_k_errors(data, k):
    z, cb = data
    with pytest.raises(ValueError, match=r"kth_nearest_indices: k must be an int in \[1, 64\]"):
        kth_nearest_indices(z, cb, k)


def test_bad_shapes_error(data):
    z, cb = data
    with pytest.raises(ValueError, match="latent dim"):
        kth_nearest_indices(z[:, :4], cb, 1)
    with pytest.raises(ValueError, match="chunk"):
        kth_nearest_indices(z, cb, 1, chunk=0)
    with pytest.raises(ValueError, match=r"VectorQuantizer.forward: expected z \(B, 8, H, W\)"):
        VectorQuantizer(16, 8)(torch.zeros(1, 4, 2, 2))


def test_codebook_init_range():
    vq = VectorQuantizer(1024, 256)
    w = vq.embedding.weight
    assert w.abs().max() <= 1 / 1024 and w.std() > 0.3 / 1024


def test_straight_through_and_legacy_loss():
    torch.manual_seed(2)
    vq = VectorQuantizer(32, 4, beta=0.25)
    z = torch.randn(3, 4, 6, 6, requires_grad=True)
    zq, loss, idx = vq(z)
    codes = vq.embedding.weight[idx].permute(0, 3, 1, 2)
    assert torch.allclose(zq, codes, atol=1e-6)  # z + (codes - z): equal up to rounding
    mse = torch.mean((codes - z) ** 2)
    assert torch.allclose(loss, 1.25 * mse)
    (zq * 3).sum().backward()  # straight-through: d zq / d z = identity
    assert torch.allclose(z.grad, torch.full_like(z, 3.0))
    vq.zero_grad()
    z2 = z.detach().requires_grad_(True)
    _, loss2, _ = vq(z2)
    loss2.backward()
    n = z2.numel()
    assert torch.allclose(z2.grad, 2 * (z2.detach() - codes.detach()) / n, atol=1e-7)  # commitment term, weight 1
    used = torch.unique(idx)
    assert vq.embedding.weight.grad[used].abs().sum() > 0  # beta term reaches the codebook
    unused = torch.ones(32, dtype=torch.bool)
    unused[used] = False
    assert vq.embedding.weight.grad[unused].abs().sum() == 0


def test_code_usage():
    p, u = code_usage(torch.arange(16).repeat(3), 16)
    assert math.isclose(p.item(), 16, rel_tol=1e-5) and u.item() == 1.0
    p, u = code_usage(torch.full((10,), 3), 16)
    assert math.isclose(p.item(), 1.0, rel_tol=1e-5) and u.item() == 1 / 16


def test_lookup_is_float32_under_bf16_autocast():
    """Training runs under autocast: the code choice must not be made from bf16-rounded dot products."""
    g = torch.Generator().manual_seed(1)
    codebook = torch.randn(1024, 64, generator=g) * 0.05 + 1.0  # close codes far from the origin: bf16 ties them
    z = codebook[torch.randint(1024, (500,), generator=g)] + 0.01 * torch.randn(500, 64, generator=g)
    want = brute_kth(z, codebook, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = nearest_indices(z, codebook)
        q = VectorQuantizer(1024, 64)
        q.embedding.weight.data.copy_(codebook)
        _, _, idx = q(z.T.reshape(1, 64, 20, 25))
    assert torch.equal(got, want)
    assert torch.equal(idx.reshape(-1), want)  # (1, D, 20, 25) flattens back to the rows of z in order
