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


# ---- fast-convergence options: k-means init, EMA updates, factorised l2 lookup


def clustered(n_clusters: int = 16, per: int = 40, dim: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(points (n_clusters*per, dim), centres (n_clusters, dim)): tight clusters (std 0.01) around far-apart centres."""
    g = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(n_clusters, dim, generator=g)
    points = centres.repeat_interleave(per, 0) + 0.01 * torch.randn(n_clusters * per, dim, generator=g)
    return points, centres


def test_kmeans_centroids_are_means_of_their_points():
    x, centres = clustered()
    centroids, counts = qmod.kmeans(x, 16, generator=torch.Generator().manual_seed(1))
    assert counts.sum() == len(x) and (counts > 0).all()
    idx = nearest_indices(x, centroids)
    for k in range(16):  # a fixed point of Lloyd's iteration
        assert torch.allclose(centroids[k], x[idx == k].mean(0), atol=1e-5)
    # every centroid sits in a cluster (distance to its nearest centre ~ the cluster's spread, not 3)
    assert torch.cdist(centroids, centres).min(1).values.max() < 0.1
    few = qmod.kmeans(x[:5], 8, generator=torch.Generator().manual_seed(0))[0]  # N < k: codes on the points
    assert torch.cdist(few, x[:5]).min(1).values.max() < 1e-6
    sph = qmod.kmeans(x, 16, spherical=True, generator=torch.Generator().manual_seed(1))[0]
    assert torch.allclose(sph.norm(dim=1), torch.ones(16), atol=1e-5)
    with pytest.raises(ValueError, match="kmeans: k must be a positive int"):
        qmod.kmeans(x, 0)


@pytest.mark.parametrize("l2", [False, True])
def test_init_codes_puts_codes_on_the_latents(l2):
    x, _ = clustered(n_clusters=32, dim=8)
    q = VectorQuantizer(32, 8, l2_codes=l2)
    lookup = torch.nn.functional.normalize(x, dim=1) if l2 else x
    before = ((lookup - q.codes[nearest_indices(lookup, q.codes.detach())]) ** 2).sum(1).mean()
    counts = q.init_codes_(lookup, generator=torch.Generator().manual_seed(0))
    after = ((lookup - q.codes[nearest_indices(lookup, q.codes.detach())]) ** 2).sum(1).mean()
    assert after < 0.05 * before and (counts > 0).sum() >= 24  # most codes on a cluster (local optima allowed)
    assert torch.cdist(q.codes.detach(), lookup).min(1).values.max() < 0.5  # no code left at its random start
    with pytest.raises(ValueError, match=r"init_codes_: expected \(N, 8\)"):
        q.init_codes_(x[:, :4])


def test_ema_update_moves_assigned_codes_to_their_mean():
    q = VectorQuantizer(8, 4, ema_decay=0.9)
    assert q.codebook.requires_grad is False  # not an optimiser parameter
    codes = torch.eye(8, 4) * 10  # codes 0-3 on the axes, 4-7 at the origin
    q.set_codes_(torch.arange(8), codes)
    z = torch.tensor([[9.0, 1.0, 0, 0], [11.0, -1.0, 2.0, 0], [0, 8.0, 0, 0]])  # two to code 0, one to code 1
    idx = nearest_indices(z, q.codes)
    assert idx.tolist() == [0, 0, 1]
    counts, sums = qmod.assignment_sums(z, idx, 8)
    q.ema_update_(counts, sums)
    # fresh statistics: count = 0.1 m, sum = 0.1 S -> code = S / m up to the Laplace smoothing (eps 1e-5)
    w = q.codebook
    assert torch.allclose(w[0], z[:2].mean(0), rtol=1e-3) and torch.allclose(w[1], z[2], rtol=1e-3)
    assert torch.equal(w[2:], codes[2:])  # never assigned: unchanged
    far = torch.tensor([[0, 20.0, 0, 0]])  # code 1 now sees a vector further out
    q.ema_update_(*qmod.assignment_sums(far, torch.tensor([1]), 8))
    want = (0.9 * 0.1 * z[2] + 0.1 * far[0]) / (0.9 * 0.1 + 0.1)
    assert torch.allclose(w[1], want, rtol=1e-3) and 8.0 < float(w[1, 1]) < 20.0  # moved toward, not onto it
    assert torch.allclose(w[0], z[:2].mean(0), rtol=1e-3)  # unassigned this step: decayed sum / count unchanged


def test_ema_loss_has_no_codebook_term_and_no_codebook_gradient():
    torch.manual_seed(2)
    vq = VectorQuantizer(32, 4, ema_decay=0.99)
    z = torch.randn(3, 4, 6, 6, requires_grad=True)
    _, loss, idx = vq(z)
    codes = vq.codes[idx].permute(0, 3, 1, 2)
    assert torch.allclose(loss, torch.mean((codes - z) ** 2))  # commitment only (the loss path: + 0.25 x that)
    loss.backward()
    assert vq.codebook.grad is None and z.grad is not None
    with pytest.raises(RuntimeError, match="ema_update_: this quantizer trains its codebook by loss"):
        VectorQuantizer(4, 2).ema_update_(torch.zeros(4), torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"ema_decay must be in \[0, 1\)"):
        VectorQuantizer(4, 2, ema_decay=1.0)


def test_set_codes_resets_ema_statistics():
    q = VectorQuantizer(4, 2, ema_decay=0.5)
    q.ema_update_(torch.tensor([1.0, 2, 0, 0]), torch.ones(4, 2))
    q.set_codes_(torch.tensor([1]), torch.tensor([[5.0, 5.0]]))
    assert q.ema_count.tolist() == [0.5, 0.0, 0.0, 0.0] and torch.equal(q.ema_sum[1], torch.zeros(2))
    assert torch.equal(q.codebook[1], torch.tensor([5.0, 5.0]))


def factorised(n_embed: int = 1024, embed_dim: int = 64, dim: int = 16, seed: int = 3) -> VectorQuantizer:
    torch.manual_seed(seed)
    return VectorQuantizer(n_embed, embed_dim, codebook_dim=dim, l2_codes=True)


def test_factorised_l2_lookup_space():
    q = factorised()
    assert q.codes.shape == (1024, 16) and torch.allclose(q.codes.norm(dim=1), torch.ones(1024), atol=1e-5)
    z = torch.randn(2, 64, 5, 7)
    zl = q.to_lookup(z)
    assert zl.shape == (2, 16, 5, 7) and torch.allclose(zl.norm(dim=1), torch.ones(2, 5, 7), atol=1e-5)
    assert q.from_lookup(zl).shape == z.shape
    plain = VectorQuantizer(16, 8)
    assert plain.to_lookup(z[:, :8]) is not None and plain.to_lookup(z) is z and plain.from_lookup(z) is z
    with pytest.raises(ValueError, match=r"VectorQuantizer.forward: expected z \(B, 16, H, W\)"):
        q(z)  # forward takes lookup-space latents
    with pytest.raises(ValueError, match="codebook_dim must be an int >= 0"):
        VectorQuantizer(4, 8, codebook_dim=-1)


@pytest.mark.parametrize("autocast", [False, True])
@pytest.mark.parametrize("k", [1, 2, 9, 50])
def test_factorised_l2_kth_nearest_matches_brute_force(k, autocast):
    """k-th nearest in the lookup space, exact, and float32 under bf16 autocast (close codes would tie in bf16)."""
    q = factorised()
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():  # codes crowded around one direction: cosines 0.99+, which bf16 cannot tell apart
        q.codebook.copy_(1.0 + 0.05 * torch.randn(1024, 16, generator=g))
    z = torch.randn(2, 64, 10, 12, generator=g)
    want_lookup = q.to_lookup(z)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        zl = q.to_lookup(z)
        got = q.kth_nearest(zl, k)
        _, _, idx = q(zl)
    assert zl.dtype == torch.float32 and torch.allclose(zl, want_lookup, atol=1e-6)  # projection not in bf16
    flat = zl.permute(0, 2, 3, 1).reshape(-1, 16)
    want = q.codes.detach()[brute_kth(flat, q.codes.detach(), k)].view(2, 10, 12, 16).permute(0, 3, 1, 2)
    assert got.dtype == torch.float32 and torch.equal(got, want)
    assert torch.equal(idx.reshape(-1), brute_kth(flat, q.codes.detach(), 1))
    # squared L2 between unit vectors = 2 - 2 cos: the k-th nearest is the k-th most similar direction
    cos = flat.double() @ q.codes.detach().double().T  # (N, K)
    picked = cos.gather(1, brute_kth(flat, q.codes.detach(), k)[:, None])[:, 0]
    assert torch.allclose(picked, cos.sort(1, descending=True).values[:, k - 1], atol=1e-9)


def test_factorised_straight_through_reaches_projections():
    q = factorised(n_embed=32, embed_dim=8, dim=4)
    z = torch.randn(2, 8, 3, 3, requires_grad=True)
    zq, loss, _ = q(q.to_lookup(z))
    ((q.from_lookup(zq) ** 2).mean() + loss).backward()
    assert q.proj_in.weight.grad.abs().sum() > 0 and q.proj_out.weight.grad.abs().sum() > 0
    assert z.grad.abs().sum() > 0 and q.codebook.grad.abs().sum() > 0  # loss-trained (no EMA): codebook term
