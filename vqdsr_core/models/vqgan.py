"""VQD-SR's multi-scale VQGAN (taming style), the degradation model that turns clean LR clips into "real" ones.

A shared trunk encodes the image to f2 and f4 (features at 1/2 and 1/4 resolution); the top branch goes on to f8
with attention, the middle branch encodes f4 and the bottom branch f2. All three latents are quantised with ONE shared
codebook. The top decoder upsamples f8 -> f1 and adds the middle decoder's output at f4 and the bottom decoder's at
f2. ``multiscale=False`` is the top-only model of training stage 1; its parameter names are a subset of the
multi-scale model's, so ``init_from_top`` can copy every tensor.

Everything the reference keeps in its ``top`` ModuleList (trunk, top branch, codebook, shared decoder) lives in
``self.top``; stage 2 trains those with LR x 0.25 (``shared_parameters``), everything else at full LR
(``branch_parameters``: conv_in, mid/bottom branches, norm_out, conv_out, as in the reference).
Width C=128 gives 121.21M parameters (multi-scale) and 56.87M (top only).

The quantiser's fast-convergence options (``codebook_dim``, ``l2_codes``, ``ema_decay``; see ``quantize``) keep
this structure: ``encode`` returns each branch's latent in the codebook's lookup space (B, D, h, w), and ``decode``
projects the quantised codes back to the E-dim decoder input. With all three off (the default and the paper) the
lookup space is the latent itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .quantize import VectorQuantizer, check_k, code_usage

DOWN = 8  # total downsampling of the top branch; inputs must be multiples of this
BRANCHES = ("top", "mid", "bot")


def norm(ch: int) -> nn.GroupNorm:
    """taming's GroupNorm: 32 groups, i.e. >= 4 channels per group at C=128; narrower layers keep 4 per group.

    With 32 groups of one channel (a width-32 model), GroupNorm is an instance norm: it removes each channel's
    mean over the image, so flat colour regions (most of a cel) lose their colour and their noise is amplified.
    """
    return nn.GroupNorm(min(32, ch // 4), ch, eps=1e-6, affine=True)


def conv3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, 1, 1)


class ResnetBlock(nn.Module):
    """GN -> swish -> conv3x3 -> GN -> swish -> dropout -> conv3x3, plus identity (channels unchanged)."""

    def __init__(self, ch: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1, self.conv1 = norm(ch), conv3(ch, ch)
        self.norm2, self.conv2 = norm(ch), conv3(ch, ch)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return x + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention over all H*W positions (1x1 q/k/v/proj, softmax scaled by C^-1/2)."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.norm = norm(ch)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(ch, ch, 1) for _ in range(4))

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        y = self.norm(x)
        q, k, v = (m(y).view(b, 1, c, h * w).transpose(2, 3) for m in (self.q, self.k, self.v))  # (B, 1, HW, C)
        a = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(C)) v
        return x + self.proj_out(a.transpose(2, 3).reshape(b, c, h, w))


class Downsample(nn.Module):
    """Pad (0, 1, 0, 1), then conv3x3 stride 2: (B, cin, H, W) -> (B, cout, H/2, W/2)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, 2, 0)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """conv3x3 cin -> 4*cout, then PixelShuffle(2): (B, cin, H, W) -> (B, cout, 2H, 2W)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = conv3(cin, 4 * cout)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: Tensor) -> Tensor:
        return self.shuffle(self.conv(x))


def basic_block(ch: int, dropout: float) -> nn.Sequential:
    """BasicBlock: two ResnetBlocks at ``ch`` channels."""
    return nn.Sequential(ResnetBlock(ch, dropout), ResnetBlock(ch, dropout))


def attn_res(ch: int, dropout: float) -> list[nn.Module]:
    """2 x [attention + ResnetBlock]."""
    return [AttnBlock(ch), ResnetBlock(ch, dropout), AttnBlock(ch), ResnetBlock(ch, dropout)]


def latent_head(ch: int, embed_dim: int) -> list[nn.Module]:
    """GN -> swish -> conv3x3 to the codebook dimension (the encoders' output)."""
    return [norm(ch), nn.SiLU(), conv3(ch, embed_dim)]


class MultiScaleVQGAN(nn.Module):
    """Multi-scale VQGAN: shared trunk, top/mid/bottom encoders, one codebook, decoder fed at f8, f4 and f2."""

    def __init__(
        self,
        width: int = 128,
        embed_dim: int = 256,
        n_embed: int = 1024,
        multiscale: bool = True,
        dropout: float = 0.0,
        codebook_dim: int = 0,
        l2_codes: bool = False,
        ema_decay: float = 0.0,
        colour_lock: bool = False,
    ) -> None:
        super().__init__()
        if width < 32 or width % 32:
            raise ValueError(f"MultiScaleVQGAN: width must be a positive multiple of 32 (GroupNorm), got {width}")
        if embed_dim < 1 or n_embed < 1:
            raise ValueError(f"MultiScaleVQGAN: embed_dim and n_embed must be >= 1, got {embed_dim}, {n_embed}")
        c, e, p = width, embed_dim, dropout
        self.width, self.embed_dim, self.n_embed, self.multiscale = c, e, n_embed, bool(multiscale)

        self.conv_in = conv3(3, c)
        self.top = nn.ModuleDict(
            {
                # shared trunk
                "enc_f1": basic_block(c, p),  # (B, C, H, W)
                "enc_f2": nn.Sequential(Downsample(c, c), basic_block(c, p)),  # (B, C, H/2, W/2) -> bottom branch
                "enc_f4": nn.Sequential(Downsample(c, 2 * c), basic_block(2 * c, p)),  # (B, 2C, H/4) -> middle branch
                # top encoder: f4 -> f8 latent (B, E, H/8, W/8)
                "enc_top": nn.Sequential(
                    Downsample(2 * c, 2 * c),
                    basic_block(2 * c, p),
                    conv3(2 * c, 4 * c),
                    basic_block(4 * c, p),
                    *attn_res(4 * c, p),
                    *latent_head(4 * c, e),
                ),
                "quantize": VectorQuantizer(
                    n_embed, e, beta=0.25, codebook_dim=codebook_dim, l2_codes=l2_codes, ema_decay=ema_decay
                ),  # shared by all branches; lookup space (B, D, h, w), D = codebook_dim or E
                # top decoder: latent f8 -> (B, 2C, H/8) -> (B, 2C, H/4)
                "dec_top": nn.Sequential(
                    conv3(e, 4 * c), *attn_res(4 * c, p), conv3(4 * c, 2 * c), basic_block(2 * c, p)
                ),
                "dec_f4": nn.Sequential(basic_block(2 * c, p), Upsample(2 * c, 2 * c)),
                # shared decoder: (+ mid) f4 -> f2, (+ bottom) f2 -> f1, final BasicBlock
                "dec_f2": nn.Sequential(basic_block(2 * c, p), Upsample(2 * c, c)),
                "dec_f1": nn.Sequential(basic_block(c, p), Upsample(c, c)),
                "dec_out": basic_block(c, p),
            }
        )
        if self.multiscale:
            # middle branch: f4 features (2C) -> latent (B, E, H/4, W/4) -> decoder output (B, 2C, H/4, W/4)
            self.enc_mid = nn.Sequential(
                conv3(2 * c, 2 * c), basic_block(2 * c, p), conv3(2 * c, 4 * c), basic_block(4 * c, p),
                *latent_head(4 * c, e),
            )  # fmt: skip
            self.dec_mid = nn.Sequential(
                conv3(e, 4 * c), basic_block(4 * c, p), conv3(4 * c, 2 * c), basic_block(2 * c, p), conv3(2 * c, 2 * c)
            )
            # bottom branch: f2 features (C) -> latent (B, E, H/2, W/2) -> decoder output (B, C, H/2, W/2)
            self.enc_bot = nn.Sequential(
                conv3(c, 2 * c), basic_block(2 * c, p), conv3(2 * c, 2 * c), basic_block(2 * c, p),
                conv3(2 * c, 4 * c), basic_block(4 * c, p), *latent_head(4 * c, e),
            )  # fmt: skip
            self.dec_bot = nn.Sequential(
                conv3(e, 4 * c), basic_block(4 * c, p), conv3(4 * c, 2 * c), basic_block(2 * c, p),
                conv3(2 * c, 2 * c), basic_block(2 * c, p), conv3(2 * c, c),
            )  # fmt: skip
        self.norm_out = norm(c)
        self.conv_out = conv3(c, 3)
        self.colour_lock = bool(colour_lock)
        if self.colour_lock:  # per branch, an orthonormal basis (D, 3) of the lookup directions that carry colour
            self.register_buffer("colour_basis", torch.zeros(len(self.branches), self.quantize.dim, 3))

    @property
    def quantize(self) -> VectorQuantizer:
        """The one codebook shared by every branch."""
        return self.top["quantize"]

    @property
    def branches(self) -> tuple[str, ...]:
        return BRANCHES if self.multiscale else ("top",)

    @property
    def last_layer(self) -> Tensor:
        """Weight of the final conv (the adaptive GAN weight takes its gradients here)."""
        return self.conv_out.weight

    def _check_input(self, func: str, x: Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"MultiScaleVQGAN.{func}: expected (B, 3, H, W), got {tuple(x.shape)}")
        if x.shape[2] % DOWN or x.shape[3] % DOWN:
            raise ValueError(
                f"MultiScaleVQGAN.{func}: H and W must be multiples of {DOWN}, got {x.shape[2]}x{x.shape[3]} "
                "(degrade() pads for you)"
            )

    def encode(self, x: Tensor) -> dict[str, Tensor]:
        """x (B, 3, H, W) in [-1, 1] -> pre-quantisation latents in the lookup space.

        {"top": (B, D, H/8, W/8), "mid": (B, D, H/4, W/4), "bot": (B, D, H/2, W/2)}; D = E without a projection.
        """
        self._check_input("encode", x)
        t = self.top
        f2 = t["enc_f2"](t["enc_f1"](self.conv_in(x)))  # (B, C, H/2, W/2)
        f4 = t["enc_f4"](f2)  # (B, 2C, H/4, W/4)
        z = {"top": t["enc_top"](f4)}  # (B, E, H/8, W/8)
        if self.multiscale:
            z["mid"] = self.enc_mid(f4)  # (B, E, H/4, W/4)
            z["bot"] = self.enc_bot(f2)  # (B, E, H/2, W/2)
        return {name: self.quantize.to_lookup(v) for name, v in z.items()}  # (B, D, h, w)

    def quantize_latents(
        self, z: Mapping[str, Tensor], k: Mapping[str, int] | None = None, colour_lock: bool = True
    ) -> dict[str, Tensor]:
        """Replace each branch's latent by its k-th nearest code (default k=1, plain VQ; no gradient).

        With a fitted colour lock (``fit_colour_lock``) and ``colour_lock``, a drawn code (k > 1) keeps the nearest
        code's component along its branch's colour directions: the draw changes texture and artefacts, not the
        colour of the area it covers. k = 1 is never changed.
        """
        k = dict(k or {})
        out = {}
        for i, name in enumerate(self.branches):
            kb = k.get(name, 1)
            q = self.quantize.kth_nearest(z[name], kb)
            if kb > 1 and colour_lock and self.colour_lock:
                basis = self.colour_basis[i].to(q.dtype)  # (D, 3)
                delta = self.quantize.kth_nearest(z[name], 1) - q  # (B, D, h, w)
                q = q + torch.einsum("dc,bchw->bdhw", basis, torch.einsum("dc,bdhw->bchw", basis, delta))
            out[name] = q
        return out

    @torch.no_grad()
    def fit_colour_lock(self, images: Iterable[Tensor]) -> dict[str, list[float]]:
        """Fit the colour lock on LQ frames ((3, H, W) in [0, 1], H and W multiples of 8, the training corpus).

        Per branch, a least-squares map from the latent (lookup space) to the mean colour of the input pixels under
        it (8/4/2 px); the orthonormal basis of its three directions is stored. Returns the fit's R^2 per branch
        and channel (R, G, B).
        """
        if not self.colour_lock:
            raise ValueError("MultiScaleVQGAN.fit_colour_lock: build the model with colour_lock=True first")
        strides = dict(zip(BRANCHES, (8, 4, 2), strict=True))
        lat: dict[str, list[Tensor]] = {b: [] for b in self.branches}
        col: dict[str, list[Tensor]] = {b: [] for b in self.branches}
        ref = self.conv_in.weight
        for img in images:
            x = img[None].to(ref.device, ref.dtype)
            z = self.encode(x * 2 - 1)
            for b in self.branches:
                lat[b].append(z[b][0].flatten(1).T.float())  # (h*w, D)
                col[b].append(F.avg_pool2d(x.float(), strides[b])[0].flatten(1).T)  # (h*w, 3)
        if not lat["top"]:
            raise ValueError("MultiScaleVQGAN.fit_colour_lock: no images")
        r2 = {}
        for i, b in enumerate(self.branches):
            zb, cb = torch.cat(lat[b]), torch.cat(col[b])
            za = torch.cat([zb, torch.ones(len(zb), 1, device=zb.device)], 1)
            sol = torch.linalg.lstsq(za.cpu(), cb.cpu()).solution  # (D + 1, 3): latent -> colour, with a bias
            res = (za.cpu() @ sol - cb.cpu()).pow(2).sum(0)
            r2[b] = (1 - res / (cb.cpu() - cb.cpu().mean(0)).pow(2).sum(0).clamp_min(1e-12)).tolist()
            basis, _ = torch.linalg.qr(sol[:-1])  # (D, 3)
            self.colour_basis[i] = basis.to(self.colour_basis)
        return r2

    def decode(self, q: Mapping[str, Tensor]) -> Tensor:
        """Quantised latents (keys as from ``encode``) -> image (B, 3, H, W), roughly in [-1, 1] (not clamped)."""
        missing = [b for b in self.branches if b not in q]
        if missing:
            raise ValueError(f"MultiScaleVQGAN.decode: missing latents {missing}; need {list(self.branches)}")
        q = {name: self.quantize.from_lookup(q[name]) for name in self.branches}  # (B, D, h, w) -> (B, E, h, w)
        t = self.top
        h = t["dec_f4"](t["dec_top"](q["top"]))  # (B, 2C, H/4, W/4)
        if self.multiscale:
            h = h + self.dec_mid(q["mid"])
        h = t["dec_f2"](h)  # (B, C, H/2, W/2)
        if self.multiscale:
            h = h + self.dec_bot(q["bot"])
        h = t["dec_out"](t["dec_f1"](h))  # (B, C, H, W)
        # The reference multi-scale decoder drops this swish (conv_out sees GN(h)); we apply it, as stage 1 does.
        return self.conv_out(F.silu(self.norm_out(h)))

    def forward(self, x: Tensor, draw: Mapping[str, int] | None = None) -> tuple[Tensor, Tensor, dict]:
        """x in [-1, 1] -> (reconstruction, VQ loss averaged over branches, info with per-branch indices/usage).

        ``draw`` ({branch: k}, k = 1 for branches not named) also decodes the k-th-nearest codes of the detached
        latents into ``info["draw"]``, as ``degrade`` does: a loss on it trains the decoder alone.
        """
        z = self.encode(x)
        q, losses = {}, []
        info: dict[str, dict[str, Tensor]] = {"indices": {}, "perplexity": {}, "usage": {}}
        for name in self.branches:
            q[name], loss, idx = self.quantize(z[name])
            losses.append(loss)
            info["indices"][name] = idx
            perplexity, usage = code_usage(idx.detach(), self.n_embed)
            info["perplexity"][name], info["usage"][name] = perplexity, usage
        if draw is not None:
            drawn = self.quantize_latents({n: v.detach() for n, v in z.items()}, draw)
            info["draw"] = self.decode({n: v.detach() for n, v in drawn.items()})
        return self.decode(q), torch.stack(losses).mean(), info

    @torch.no_grad()
    def degrade(
        self,
        x01: Tensor,
        k_top: int = 1,
        k_mid: int = 1,
        k_bottom: int = 1,
        batch_size: int | None = None,
        colour_lock: bool = True,
    ) -> Tensor:
        """VQ degradation: (B, 3, H, W) in [0, 1] -> reconstruction through the k-th nearest codes, in [0, 1].

        Any H, W: replicate-padded to a multiple of 8 and cropped back. Runs on the model's device/dtype and returns
        the input's. ``batch_size`` bounds how many frames go through at once. No gradient; call ``eval()`` first
        when the model has dropout. ``colour_lock``: use the fitted colour lock on the draws (see
        ``quantize_latents``); no effect on a model without one.
        """
        if x01.dim() != 4 or x01.shape[1] != 3:
            raise ValueError(f"MultiScaleVQGAN.degrade: expected (B, 3, H, W) in [0, 1], got {tuple(x01.shape)}")
        k = {"top": check_k("MultiScaleVQGAN.degrade (k_top)", k_top, self.n_embed)}
        if self.multiscale:
            k["mid"] = check_k("MultiScaleVQGAN.degrade (k_mid)", k_mid, self.n_embed)
            k["bot"] = check_k("MultiScaleVQGAN.degrade (k_bottom)", k_bottom, self.n_embed)
        elif k_mid != 1 or k_bottom != 1:
            raise ValueError("MultiScaleVQGAN.degrade: a top-only model (multiscale=False) has no mid/bottom branch")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"MultiScaleVQGAN.degrade: batch_size must be >= 1, got {batch_size}")
        ref = self.conv_in.weight
        h, w = x01.shape[-2:]
        x = x01.to(ref.device, ref.dtype) * 2 - 1
        x = F.pad(x, (0, -w % DOWN, 0, -h % DOWN), mode="replicate")
        outs = [
            self.decode(self.quantize_latents(self.encode(part), k, colour_lock))
            for part in x.split(batch_size or len(x))
        ]
        y = torch.cat(outs)[..., :h, :w].clamp(-1, 1)
        return ((y + 1) / 2).to(x01.device, x01.dtype)

    def init_from_top(self, top_model: nn.Module | Mapping[str, Tensor]) -> None:
        """Copy every tensor of a stage-1 (top-only) model into this one; raise unless all find a home.

        Also raises if any tensor this model shares with the top-only architecture is left uncovered.
        """
        state = top_model.state_dict() if isinstance(top_model, nn.Module) else dict(top_model)
        own = self.state_dict()
        homeless = sorted(n for n in state if n not in own)
        wrong = sorted(
            f"{n} {tuple(v.shape)} vs {tuple(own[n].shape)}"
            for n, v in state.items()
            if n in own and v.shape != own[n].shape
        )
        uncovered = sorted(
            n
            for n in own
            if n not in state and not n.startswith(("enc_mid.", "dec_mid.", "enc_bot.", "dec_bot.", "colour_basis"))
        )
        if homeless or wrong or uncovered:
            raise ValueError(
                "MultiScaleVQGAN.init_from_top: top model does not fit: "
                f"{len(homeless)} tensors without a home {homeless[:3]}, {len(wrong)} with wrong shape {wrong[:3]}, "
                f"{len(uncovered)} of ours not covered {uncovered[:3]}"
            )
        with torch.no_grad():
            for n, v in state.items():
                own[n].copy_(v)

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        """Trunk, top branch, codebook and shared decoder (the reference's ``top`` list): stage-2 LR x 0.25."""
        return self.top.parameters()

    def branch_parameters(self) -> Iterator[nn.Parameter]:
        """Every parameter not in ``shared_parameters`` (conv_in, mid/bottom branches, norm_out, conv_out)."""
        shared = {id(p) for p in self.top.parameters()}
        return (p for p in self.parameters() if id(p) not in shared)
