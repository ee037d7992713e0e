"""MultiScaleVQGAN: reference parameter counts, shapes, gradients, degrade(), init_from_top, LR groups, weights I/O."""

from __future__ import annotations

import pytest
import torch

from vqdsr_core.models import build_model
from vqdsr_core.models.vqgan import MultiScaleVQGAN

SMALL = {"width": 32, "embed_dim": 16, "n_embed": 64}


def n_params(params) -> int:
    return sum(p.numel() for p in params)


@pytest.fixture(scope="module")
def small() -> MultiScaleVQGAN:
    torch.manual_seed(0)
    return MultiScaleVQGAN(**SMALL).eval()


def test_paper_size_parameter_counts():
    with torch.device("meta"):  # 121M parameters: no memory, no init cost
        ms, top = MultiScaleVQGAN(), MultiScaleVQGAN(multiscale=False)
    assert n_params(ms.parameters()) == pytest.approx(121.21e6, rel=0.01)
    assert n_params(top.parameters()) == pytest.approx(56.87e6, rel=0.01)
    # per-branch sizes of the fact sheet (mid/bottom encoder and decoder), codebook 1024 x 256
    for name, ref in {"enc_mid": 14.76e6, "enc_bot": 17.41e6, "dec_mid": 14.76e6, "dec_bot": 17.41e6}.items():
        assert n_params(getattr(ms, name).parameters()) == pytest.approx(ref, rel=0.01), name
    assert ms.quantize.embedding.weight.shape == (1024, 256)


def test_top_names_are_a_subset_with_same_shapes():
    ms, top = MultiScaleVQGAN(**SMALL), MultiScaleVQGAN(**SMALL, multiscale=False)
    ms_state, top_state = ms.state_dict(), top.state_dict()
    assert set(top_state) < set(ms_state)
    assert all(ms_state[k].shape == v.shape for k, v in top_state.items())


def test_encode_decode_shapes(small):
    x = torch.rand(2, 3, 48, 40) * 2 - 1
    z = small.encode(x)
    assert {k: tuple(v.shape) for k, v in z.items()} == {
        "top": (2, 16, 6, 5),
        "mid": (2, 16, 12, 10),
        "bot": (2, 16, 24, 20),
    }
    assert small.decode(small.quantize_latents(z)).shape == x.shape
    top = MultiScaleVQGAN(**SMALL, multiscale=False)
    assert list(top.encode(x)) == ["top"]


def test_forward_returns_loss_and_usage(small):
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    xrec, loss, info = small(x)
    assert xrec.shape == x.shape and loss.dim() == 0 and loss > 0
    assert info["indices"]["bot"].shape == (2, 16, 16)
    for branch in ("top", "mid", "bot"):
        idx = info["indices"][branch]
        assert idx.min() >= 0 and idx.max() < 64
        assert 1.0 <= info["perplexity"][branch] <= 64
        assert info["usage"][branch] == len(torch.unique(idx)) / 64


def test_gradients_reach_every_parameter():
    torch.manual_seed(1)
    model = MultiScaleVQGAN(**SMALL)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    xrec, vq_loss, _ = model(x)
    ((xrec - x).abs().mean() + vq_loss).backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, dead
    assert model.last_layer is model.conv_out.weight


def test_forward_draw_is_degrade_and_trains_the_decoder_only(cartoon_tensor):
    torch.manual_seed(2)
    model = MultiScaleVQGAN(**SMALL).eval()
    x01 = cartoon_tensor(1, 32, 32, seed=6)
    _, _, info = model(x01 * 2 - 1, draw={"mid": 3, "bot": 7})
    ref = model.degrade(x01, k_mid=3, k_bottom=7)  # the same draw, clamped to [0, 1]
    assert torch.allclose((info["draw"].clamp(-1, 1) + 1) / 2, ref, atol=1e-5)
    info["draw"].abs().mean().backward()
    grads = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert grads and all(n.startswith(("top.dec", "dec_", "norm_out", "conv_out")) for n in grads), sorted(grads)
    assert "conv_out.weight" in grads and not any("enc" in n or "quantize" in n for n in grads)
    assert "draw" not in model(x01 * 2 - 1)[2]


@pytest.mark.parametrize("size", [(37, 45), (8, 8), (1, 13)])
def test_degrade_odd_sizes(small, size, cartoon_tensor):
    x = cartoon_tensor(2, *size)
    y = small.degrade(x, k_top=2, k_mid=3, k_bottom=4)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert y.min() >= 0 and y.max() <= 1
    assert not y.requires_grad


def test_degrade_is_deterministic_and_batch_independent(small, cartoon_tensor):
    x = cartoon_tensor(3, 16, 16)
    a = small.degrade(x, k_mid=5)
    assert torch.equal(a, small.degrade(x, k_mid=5))
    assert torch.allclose(a, small.degrade(x, k_mid=5, batch_size=1), atol=1e-5)
    # k=1 everywhere equals a plain forward pass, clamped and mapped back to [0, 1]
    xrec, _, _ = small(x * 2 - 1)
    assert torch.allclose(small.degrade(x), ((xrec.clamp(-1, 1) + 1) / 2), atol=1e-5)


@pytest.fixture(scope="module")
def lined(cartoon_frames_16x24) -> MultiScaleVQGAN:
    """Small random model whose codebook lies on a line through its latents (0.1 latent-std spacing).

    A random U(+-1/n) codebook puts every code about equally far from every latent, so "k-th nearest" barely means
    anything; on a line the k-th nearest code is increasingly far away, like a trained codebook's spread.
    """
    torch.manual_seed(4)
    model = MultiScaleVQGAN(**SMALL).eval()
    with torch.no_grad():
        z = model.encode(cartoon_frames_16x24 * 2 - 1)
        flat = torch.cat([v.permute(0, 2, 3, 1).reshape(-1, SMALL["embed_dim"]) for v in z.values()])
        u = torch.nn.functional.normalize(torch.randn(SMALL["embed_dim"]), dim=0)
        steps = torch.linspace(-3, 3, SMALL["n_embed"])[:, None] * flat.std(0).mean()
        model.quantize.embedding.weight.copy_(flat.mean(0) + steps * u)
    return model


@pytest.fixture(scope="module")
def cartoon_frames_16x24() -> torch.Tensor:
    from conftest import cartoon_frames

    return torch.from_numpy(cartoon_frames(1, 16, 24)).permute(0, 3, 1, 2).float() / 255


@pytest.mark.parametrize("branch", ["k_top", "k_mid", "k_bottom"])
def test_larger_k_moves_output_further(lined, branch, cartoon_frames_16x24):
    x = cartoon_frames_16x24
    y1 = lined.degrade(x)
    d = [(lined.degrade(x, **{branch: k}) - y1).abs().mean().item() for k in (2, 8, 64)]
    assert 0.0 < d[0] < d[1] < d[2], d


def test_bad_inputs(small):
    with pytest.raises(ValueError, match="width must be a positive multiple of 32"):
        MultiScaleVQGAN(width=48)
    with pytest.raises(ValueError, match="multiples of 8"):
        small(torch.zeros(1, 3, 20, 16))
    with pytest.raises(ValueError, match=r"expected \(B, 3, H, W\)"):
        small.encode(torch.zeros(3, 16, 16))
    for bad in ({"k_top": 0}, {"k_mid": 65}, {"k_bottom": 2.0}):
        with pytest.raises(ValueError, match=r"MultiScaleVQGAN.degrade \(k_\w+\): k must be an int in \[1, 64\]"):
            small.degrade(torch.zeros(1, 3, 8, 8), **bad)
    with pytest.raises(ValueError, match="top-only"):
        MultiScaleVQGAN(**SMALL, multiscale=False).degrade(torch.zeros(1, 3, 8, 8), k_mid=3)
    with pytest.raises(ValueError, match="missing latents"):
        small.decode({"top": torch.zeros(1, 16, 1, 1)})


def test_init_from_top_round_trip(cartoon_tensor):
    torch.manual_seed(2)
    top = MultiScaleVQGAN(**SMALL, multiscale=False).eval()
    torch.manual_seed(3)
    ms = MultiScaleVQGAN(**SMALL).eval()
    before = {k: v.clone() for k, v in ms.state_dict().items()}
    ms.init_from_top(top)
    after, top_state = ms.state_dict(), top.state_dict()
    for k, v in after.items():
        if k in top_state:
            assert torch.equal(v, top_state[k]), k
        else:
            assert k.split(".")[0] in {"enc_mid", "dec_mid", "enc_bot", "dec_bot"} and torch.equal(v, before[k]), k
    x = cartoon_tensor(1, 16, 16) * 2 - 1
    assert torch.equal(ms.encode(x)["top"], top.encode(x)["top"])


def test_init_from_top_never_loads_partially():
    ms = MultiScaleVQGAN(**SMALL)
    top_state = MultiScaleVQGAN(**SMALL, multiscale=False).state_dict()
    snapshot = {k: v.clone() for k, v in ms.state_dict().items()}
    extra = dict(top_state, **{"top.extra.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="1 tensors without a home"):
        ms.init_from_top(extra)
    missing = {k: v for k, v in top_state.items() if k != "conv_out.bias"}
    with pytest.raises(ValueError, match="1 of ours not covered"):
        ms.init_from_top(missing)
    with pytest.raises(ValueError, match="wrong shape"):
        ms.init_from_top(MultiScaleVQGAN(width=64, embed_dim=16, n_embed=64, multiscale=False))
    assert all(torch.equal(v, snapshot[k]) for k, v in ms.state_dict().items())


def test_shared_and_branch_parameters_partition_the_model():
    ms = MultiScaleVQGAN(**SMALL)
    shared, branch = list(ms.shared_parameters()), list(ms.branch_parameters())
    ids_s, ids_b = {id(p) for p in shared}, {id(p) for p in branch}
    assert not ids_s & ids_b and ids_s | ids_b == {id(p) for p in ms.parameters()}
    assert id(ms.quantize.embedding.weight) in ids_s
    for name in ("conv_in", "norm_out", "conv_out", "enc_mid", "dec_bot"):
        assert all(id(p) in ids_b for p in getattr(ms, name).parameters()), name
    # the shared group is exactly what a top-only model has, minus conv_in / norm_out / conv_out
    top = MultiScaleVQGAN(**SMALL, multiscale=False)
    edges = n_params(p for m in (top.conv_in, top.norm_out, top.conv_out) for p in m.parameters())
    assert n_params(shared) == n_params(top.parameters()) - edges


def test_weight_file_round_trip(tmp_path, small, cartoon_tensor):
    from vqdsr_core.weights import load_model, save_weights

    path = save_weights(tmp_path / "vq.safetensors", small, arch="multiscale_vqgan", config=SMALL)
    loaded, info = load_model(path, arch="multiscale_vqgan")
    assert isinstance(loaded, MultiScaleVQGAN) and info.config == SMALL
    x = cartoon_tensor(1, 16, 16)
    assert torch.equal(loaded.degrade(x, k_mid=2), small.degrade(x, k_mid=2))
    assert isinstance(build_model("multiscale_vqgan", {**SMALL, "multiscale": False}), MultiScaleVQGAN)


def test_group_norm_keeps_four_channels_per_group():
    """Paper width: taming's 32 groups everywhere; narrow CPU models never fall to one channel per group."""
    from torch import nn

    with torch.device("meta"):
        paper, narrow = MultiScaleVQGAN(width=128), MultiScaleVQGAN(width=32, embed_dim=128)
    assert {m.num_groups for m in paper.modules() if isinstance(m, nn.GroupNorm)} == {32}
    assert min(m.num_channels // m.num_groups for m in narrow.modules() if isinstance(m, nn.GroupNorm)) == 4


FAST = {**SMALL, "codebook_dim": 8, "l2_codes": True, "ema_decay": 0.99}


def test_fast_options_keep_the_architecture():
    """Same three branches and one shared codebook; only the quantiser gains two 1x1 projections and EMA buffers."""
    plain, fast = MultiScaleVQGAN(**SMALL).state_dict(), MultiScaleVQGAN(**FAST).state_dict()
    new = sorted(set(fast) - set(plain))
    assert new == [
        "top.quantize.ema_count", "top.quantize.ema_sum", "top.quantize.embedding.raw",
        "top.quantize.proj_in.bias", "top.quantize.proj_in.weight", "top.quantize.proj_out.bias",
        "top.quantize.proj_out.weight",
    ]  # fmt: skip
    assert sorted(set(plain) - set(fast)) == ["top.quantize.embedding.weight"]
    assert fast["top.quantize.embedding.raw"].shape == (64, 8)
    top = MultiScaleVQGAN(**FAST, multiscale=False)
    ms = MultiScaleVQGAN(**FAST)
    ms.init_from_top(top)  # the stage-2 start works with the options
    assert torch.equal(ms.quantize.codes, top.quantize.codes)


def test_fast_encode_is_the_lookup_space_and_degrade_uses_it(cartoon_tensor):
    torch.manual_seed(6)
    model = MultiScaleVQGAN(**FAST).eval()
    x = cartoon_tensor(1, 32, 24)
    z = model.encode(x * 2 - 1)
    assert {k: tuple(v.shape) for k, v in z.items()} == {
        "top": (1, 8, 4, 3),
        "mid": (1, 8, 8, 6),
        "bot": (1, 8, 16, 12),
    }
    assert all(torch.allclose(v.norm(dim=1), torch.ones(()), atol=1e-5) for v in z.values())
    codes = model.quantize.codes
    for k in (1, 3, 40):  # degrade's k-th nearest = brute force in the space the codes were trained in
        q = model.quantize_latents(z, {"top": k, "mid": k, "bot": k})
        for name, v in z.items():
            flat = v.permute(0, 2, 3, 1).reshape(-1, 8).double()
            want = (torch.cdist(flat, codes.double()) ** 2).argsort(dim=1, stable=True)[:, k - 1]
            assert torch.equal(q[name].permute(0, 2, 3, 1).reshape(-1, 8), codes[want]), (name, k)
        manual = model.decode(q).clamp(-1, 1).add(1).div(2)
        assert torch.allclose(model.degrade(x, k_top=k, k_mid=k, k_bottom=k), manual, atol=1e-6)


def test_fast_weight_file_round_trip_records_the_options(tmp_path, cartoon_tensor):
    from vqdsr_core.weights import load_model, save_weights

    torch.manual_seed(7)
    model = MultiScaleVQGAN(**FAST).eval()
    with torch.no_grad():
        model.quantize.ema_count.fill_(0.5)  # training state travels too (strict loading)
    path = save_weights(tmp_path / "fast.safetensors", model, arch="multiscale_vqgan", config=FAST)
    loaded, info = load_model(path, arch="multiscale_vqgan")
    assert info.config == FAST and loaded.quantize.factorized and loaded.quantize.l2_codes
    assert loaded.quantize.ema_decay == 0.99 and torch.equal(loaded.quantize.ema_count, model.quantize.ema_count)
    x = cartoon_tensor(1, 16, 16)
    assert torch.equal(loaded.degrade(x, k_mid=3, k_bottom=9), model.degrade(x, k_mid=3, k_bottom=9))
    from vqdsr_core.weights import WeightsError

    wrong = save_weights(tmp_path / "wrong.safetensors", model, arch="multiscale_vqgan", config=SMALL)
    with pytest.raises(WeightsError, match="does not fit"):  # a file whose config lacks the options is refused
        load_model(wrong, arch="multiscale_vqgan")


def test_weight_file_without_the_options_loads_unchanged(tmp_path):
    """A weight file from before the options (no such config keys) builds the plain quantiser and loads strictly."""
    from vqdsr_core.weights import load_model, read_weights, save_weights

    old = MultiScaleVQGAN(width=32, embed_dim=8, n_embed=16)
    cfg = {"width": 32, "embed_dim": 8, "n_embed": 16, "multiscale": True, "dropout": 0.0}  # the old key set
    path = save_weights(tmp_path / "old.safetensors", old, arch="multiscale_vqgan", config=cfg)
    _, info = read_weights(path)
    assert not {"codebook_dim", "l2_codes", "ema_decay"} & set(info.config)
    model, _ = load_model(path, arch="multiscale_vqgan")
    q = model.quantize
    assert not (q.factorized or q.l2_codes or q.ema_decay) and isinstance(q.embedding, torch.nn.Embedding)
    z = torch.randn(1, q.embed_dim, 2, 2)
    assert q.to_lookup(z) is z and q.from_lookup(z) is z  # the latent is the lookup space, as before
    for name, want in old.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], want)


def test_bundled_degrader_records_its_codebook_options():
    """The bundled degrader (vqgan_fast preset) rebuilds its 32-d l2 lookup from the file alone."""
    from vqdsr_core.weights import bundled_weights, load_model

    model, info = load_model(bundled_weights("vqgan"), arch="multiscale_vqgan")
    q = model.quantize
    assert info.config["multiscale"] and q.n_embed == 1024 and q.dim == info.config["codebook_dim"] == 32
    assert q.factorized and q.l2_codes
    z = model.encode(torch.rand(1, 3, 16, 16) * 2 - 1)
    shapes = {k: tuple(v.shape) for k, v in z.items()}
    assert shapes == {"top": (1, 32, 2, 2), "mid": (1, 32, 4, 4), "bot": (1, 32, 8, 8)}
    assert torch.allclose(z["bot"].norm(dim=1), torch.ones(1, 8, 8), atol=1e-3)  # l2-normalised lookup latents


def _locked(seed: int = 8) -> MultiScaleVQGAN:
    torch.manual_seed(seed)
    return MultiScaleVQGAN(**FAST, colour_lock=True).eval()


def test_colour_lock_keeps_the_nearest_codes_colour_part(cartoon_tensor):
    model = _locked()
    x = cartoon_tensor(1, 32, 24, seed=3)
    z = model.encode(x * 2 - 1)
    k = {"top": 1, "mid": 4, "bot": 9}
    raw = model.quantize_latents(z, k, colour_lock=False)
    assert all(torch.equal(a, b) for a, b in zip(model.quantize_latents(z, k).values(), raw.values()))  # unfitted
    basis = torch.linalg.qr(torch.randn(len(model.branches), 8, 3))[0]  # (branches, D, 3), orthonormal columns
    model.colour_basis.copy_(basis)
    locked = model.quantize_latents(z, k)
    nearest = model.quantize_latents(z, {})

    def along(b, v):  # coordinates of latents v (B, D, h, w) on the directions b (D, 3)
        return torch.einsum("dc,bdhw->bchw", b, v)

    def rest(b, v):  # what is left of v off those directions
        return v - torch.einsum("dc,bchw->bdhw", b, along(b, v))

    for i, name in enumerate(model.branches):
        b = basis[i]
        if k[name] == 1:  # k = 1 is never touched
            assert torch.equal(locked[name], nearest[name])
            continue
        assert torch.allclose(along(b, locked[name]), along(b, nearest[name]), atol=1e-5)  # colour: the nearest's
        assert torch.allclose(rest(b, locked[name]), rest(b, raw[name]), atol=1e-5)  # the rest: the drawn code's
        assert not torch.allclose(locked[name], raw[name])
    out = model.degrade(x, k_mid=4, k_bottom=9)
    assert torch.allclose(out, model.decode(locked).clamp(-1, 1).add(1).div(2), atol=1e-6)
    assert not torch.allclose(out, model.degrade(x, k_mid=4, k_bottom=9, colour_lock=False))
    assert torch.equal(model.degrade(x), model.degrade(x, colour_lock=False))  # k = 1 everywhere: identical


def test_fit_colour_lock_finds_the_directions_that_carry_colour(cartoon_tensor):
    import torch.nn.functional as F

    model = _locked()
    gen = torch.Generator().manual_seed(0)

    def encode(x):  # lookup latents whose axes 2, 5, 7 are exactly the pooled R, G, B: the rest is noise
        out = {}
        for name, s in zip(model.branches, (8, 4, 2), strict=True):
            c = F.avg_pool2d((x + 1) / 2, s)
            z = torch.randn(x.shape[0], 8, *c.shape[-2:], generator=gen)
            z[:, [2, 5, 7]] = c * 3 + 0.5
            out[name] = z
        return out

    model.encode = encode
    images = list(cartoon_tensor(4, 32, 48, seed=4))
    r2 = model.fit_colour_lock(images)
    for i, name in enumerate(model.branches):
        assert min(r2[name]) > 0.999
        b = model.colour_basis[i]
        torch.testing.assert_close(b.T @ b, torch.eye(3), atol=1e-5, rtol=0)  # orthonormal
        proj = b @ b.T  # the projection onto the fitted directions: exactly axes 2, 5, 7
        want = torch.zeros(8, 8)
        want[[2, 5, 7], [2, 5, 7]] = 1
        torch.testing.assert_close(proj, want, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="colour_lock=True first"):
        MultiScaleVQGAN(**FAST).fit_colour_lock(images)
    with pytest.raises(ValueError, match="no images"):
        _locked().fit_colour_lock([])


def test_colour_lock_travels_in_the_weight_file(tmp_path, cartoon_tensor):
    from vqdsr_core.weights import load_model, save_weights

    model = _locked()
    model.colour_basis.copy_(torch.linalg.qr(torch.randn(3, 8, 3))[0])
    cfg = {**FAST, "colour_lock": True}
    path = save_weights(tmp_path / "locked.safetensors", model, arch="multiscale_vqgan", config=cfg)
    loaded, _ = load_model(path, arch="multiscale_vqgan")
    assert loaded.colour_lock and torch.equal(loaded.colour_basis, model.colour_basis)
    x = cartoon_tensor(1, 16, 16, seed=5)
    assert torch.equal(loaded.degrade(x, k_mid=3, k_bottom=9), model.degrade(x, k_mid=3, k_bottom=9))
