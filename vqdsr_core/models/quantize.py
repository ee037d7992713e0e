"""Vector quantiser of the VQGAN degradation model (taming's legacy VectorQuantizer2) and the k-th-nearest lookup.

Training uses plain nearest-code quantisation by squared L2 with a straight-through estimator. VQD-SR's degradation
replaces each latent by its **k-th** nearest code (one k for the whole call; k=1 is ordinary VQ). Distances are
computed in chunks of positions so that no (positions x n_embed) matrix larger than ``chunk x n_embed`` is built.

Options that make small VQ models converge fast (all off by default, i.e. the paper's quantiser; none of them is in
taming-transformers): a factorised lookup space (ViT-VQGAN: latents projected to ``codebook_dim``), l2-normalised
codes and latents (``l2_codes``: cosine lookup), EMA codebook updates instead of the codebook loss (``ema_decay``),
and k-means initialisation (:func:`kmeans`, :meth:`VectorQuantizer.init_codes_`). Every lookup, the k-th nearest
included, happens in the one *lookup space*: ``to_lookup(z)`` against ``codes``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

KMEANS_ITERS = 10  # Lloyd iterations of the codebook initialisation (as vector-quantize-pytorch)
LAPLACE_EPS = 1e-5  # additive smoothing of the EMA code counts

DEFAULT_CHUNK = 4096  # positions per distance block: 4096 x 1024 float32 = 16 MiB


def squared_distances(z_flat: Tensor, codebook: Tensor) -> Tensor:
    """(N, K) squared L2 distances ||z||^2 + ||e||^2 - 2 z.e, computed in float32.

    Autocast is switched off here: under bf16/fp16 autocast the matmul would round z.e to 8-11 bits, and the
    argmin over 1,024 nearly equidistant codes would pick codes at random (VQGAN training stalls).
    """
    with torch.autocast(z_flat.device.type, enabled=False):
        z = z_flat.float()
        e = codebook.float()
        return z.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1)[None, :] - 2.0 * (z @ e.t())


def _check_lookup(func: str, z_flat: Tensor, codebook: Tensor, chunk: int) -> None:
    if z_flat.dim() != 2 or codebook.dim() != 2:
        raise ValueError(
            f"{func}: expected z_flat (N, D) and codebook (K, D), got {tuple(z_flat.shape)} and {tuple(codebook.shape)}"
        )
    if z_flat.shape[1] != codebook.shape[1]:
        raise ValueError(f"{func}: latent dim {z_flat.shape[1]} != codebook dim {codebook.shape[1]}")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"{func}: chunk must be a positive int, got {chunk!r}")


def check_k(func: str, k: object, n_embed: int) -> int:
    """Return ``k`` if it is an int in [1, n_embed]; otherwise raise a ValueError naming ``func``."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n_embed:
        raise ValueError(f"{func}: k must be an int in [1, {n_embed}] (the codebook size), got {k!r}")
    return k


def nearest_indices(z_flat: Tensor, codebook: Tensor, chunk: int = DEFAULT_CHUNK) -> Tensor:
    """(N,) index of the nearest code of every row of ``z_flat`` (N, D); distances built ``chunk`` rows at a time."""
    _check_lookup("nearest_indices", z_flat, codebook, chunk)
    out = [squared_distances(part, codebook).argmin(1) for part in z_flat.split(chunk)]
    return torch.cat(out) if out else z_flat.new_zeros(0, dtype=torch.long)


def kth_nearest_indices(z_flat: Tensor, codebook: Tensor, k: int, chunk: int = DEFAULT_CHUNK) -> Tensor:
    """(N,) index of exactly the k-th nearest code (k=1: nearest) of every row of ``z_flat`` (N, D).

    Memory is bounded by one (chunk, K) distance block at a time.
    """
    _check_lookup("kth_nearest_indices", z_flat, codebook, chunk)
    check_k("kth_nearest_indices", k, codebook.shape[0])
    out = [squared_distances(part, codebook).kthvalue(k, dim=1).indices for part in z_flat.split(chunk)]
    return torch.cat(out) if out else z_flat.new_zeros(0, dtype=torch.long)


def code_usage(indices: Tensor, n_embed: int) -> tuple[Tensor, Tensor]:
    """(perplexity, fraction of codes used) of a batch of code indices, for logging.

    Perplexity = exp(entropy of the code histogram): n_embed when usage is uniform, 1 when one code is used.
    """
    counts = torch.bincount(indices.reshape(-1), minlength=n_embed).float()
    p = counts / counts.sum().clamp_min(1.0)
    entropy = -(p * torch.log(p.clamp_min(1e-10))).sum()
    return entropy.exp(), (counts > 0).float().mean()


def assignment_sums(z_flat: Tensor, idx: Tensor, n_embed: int) -> tuple[Tensor, Tensor]:
    """(counts (K,), sums (K, D)) in float32: how many rows of ``z_flat`` (N, D) each code got, and their sum."""
    counts = torch.bincount(idx.reshape(-1), minlength=n_embed).float()
    sums = torch.zeros(n_embed, z_flat.shape[1], dtype=torch.float32, device=z_flat.device)
    return counts, sums.index_add_(0, idx.reshape(-1), z_flat.float())


def kmeans(
    x: Tensor, k: int, iters: int = KMEANS_ITERS, *, spherical: bool = False, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Lloyd's k-means of the rows of ``x`` (N, D): (centroids (k, D), cluster sizes (k,)), float32.

    Seeded by k-means++ (each next centroid a row drawn with probability ~ squared distance to the nearest one so
    far; rows drawn with replacement when N < k); an empty cluster keeps its centroid. ``spherical``: centroids are
    l2-normalised after every update (cosine k-means, for l2 codes). Assignment uses the chunked float32
    nearest-code lookup, so the centroids are what training's lookup would pick.
    """
    if x.dim() != 2 or x.shape[0] < 1:
        raise ValueError(f"kmeans: expected x (N >= 1, D), got {tuple(x.shape)}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"kmeans: k must be a positive int, got {k!r}")
    x = x.detach().float()
    if spherical:
        x = F.normalize(x, dim=1)
    centroids = (
        _kmeans_pp(x, k, generator) if x.shape[0] > k else x[torch.randint(x.shape[0], (k,), generator=generator)]
    )
    counts = torch.zeros(k, device=x.device)
    for _ in range(iters):
        counts, sums = assignment_sums(x, nearest_indices(x, centroids), k)
        full = counts > 0
        centroids[full] = sums[full] / counts[full, None]
        if spherical:
            centroids = F.normalize(centroids, dim=1)
    return centroids, counts


def _kmeans_pp(x: Tensor, k: int, generator: torch.Generator | None) -> Tensor:
    """k-means++ seeding: (k, D) distinct rows of ``x`` (N > k, D), float32 on the CPU's generator."""
    first = int(torch.randint(x.shape[0], (1,), generator=generator))
    picks = [first]
    d2 = ((x - x[first]) ** 2).sum(1)  # (N,) squared distance to the nearest pick
    for _ in range(k - 1):
        weights = d2.cpu().double()
        nxt = int(torch.multinomial(weights, 1, generator=generator)) if weights.sum() > 0 else len(picks)
        picks.append(nxt)
        d2 = torch.minimum(d2, ((x - x[nxt]) ** 2).sum(1))
    return x[torch.tensor(picks, device=x.device)].clone()


class UnitCodebook(nn.Module):
    """l2-normalised codes (ViT-VQGAN): ``weight`` (K, D) is the stored ``raw`` (K, D) scaled to unit length.

    The same ``.weight`` as ``nn.Embedding``, so every consumer of ``quantizer.embedding.weight`` sees the codes the
    lookup uses.
    """

    def __init__(self, n_embed: int, dim: int) -> None:
        super().__init__()
        self.raw = nn.Parameter(F.normalize(torch.randn(n_embed, dim), dim=1))

    @property
    def weight(self) -> Tensor:
        return F.normalize(self.raw, dim=1)


class VectorQuantizer(nn.Module):
    """Nearest-code VQ with straight-through gradients and taming's legacy loss, plus the fast-convergence options.

    loss = mean((sg[zq] - z)^2) + beta * mean((zq - sg[z])^2): beta weighs the *codebook* term (taming's historical
    ordering, kept because the released VQD-SR model was trained with it). With ``ema_decay`` > 0 the codebook term
    is dropped and the codebook is no parameter of the optimiser (``requires_grad`` False): :meth:`ema_update_`
    moves each code to the EMA mean of the latents assigned to it (Laplace-smoothed counts).

    ``codebook_dim`` > 0: a 1x1 conv projects the E-dim latent to the D = ``codebook_dim`` lookup space and another
    projects the code back (ViT-VQGAN's factorised codes); 0 = no projection (D = E). ``l2_codes``: latents and codes
    are l2-normalised in the lookup space (nearest by L2 = nearest by cosine). ``forward`` and ``kth_nearest`` take
    latents already in the lookup space (``to_lookup``); the model's decoder input is ``from_lookup(zq)``.
    """

    def __init__(
        self,
        n_embed: int,
        embed_dim: int,
        beta: float = 0.25,
        chunk: int = DEFAULT_CHUNK,
        *,
        codebook_dim: int = 0,
        l2_codes: bool = False,
        ema_decay: float = 0.0,
    ) -> None:
        super().__init__()
        if n_embed < 1 or embed_dim < 1:
            raise ValueError(f"VectorQuantizer: n_embed and embed_dim must be >= 1, got {n_embed}, {embed_dim}")
        if isinstance(codebook_dim, bool) or not isinstance(codebook_dim, int) or codebook_dim < 0:
            raise ValueError(f"VectorQuantizer: codebook_dim must be an int >= 0 (0 = embed_dim), got {codebook_dim!r}")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"VectorQuantizer: ema_decay must be in [0, 1) (0 = codebook loss), got {ema_decay!r}")
        self.n_embed, self.embed_dim, self.beta, self.chunk = n_embed, embed_dim, float(beta), chunk
        self.dim = codebook_dim or embed_dim  # D, the lookup space
        self.factorized, self.l2_codes, self.ema_decay = codebook_dim > 0, bool(l2_codes), float(ema_decay)
        if self.factorized:
            self.proj_in = nn.Conv2d(embed_dim, self.dim, 1)  # (B, E, H, W) -> (B, D, H, W)
            self.proj_out = nn.Conv2d(self.dim, embed_dim, 1)  # (B, D, H, W) -> (B, E, H, W)
        if self.l2_codes:
            self.embedding: nn.Module = UnitCodebook(n_embed, self.dim)
        else:
            self.embedding = nn.Embedding(n_embed, self.dim)
            nn.init.uniform_(self.embedding.weight, -1.0 / n_embed, 1.0 / n_embed)
        if self.ema_decay:
            self.codebook.requires_grad_(False)
            self.register_buffer("ema_count", torch.zeros(n_embed))  # (K,) EMA of assignments per step
            self.register_buffer("ema_sum", torch.zeros(n_embed, self.dim))  # (K, D) EMA of their sum

    @property
    def codebook(self) -> nn.Parameter:
        """The stored codebook (K, D) that training changes; ``codes`` is what the lookup compares with."""
        return self.embedding.raw if self.l2_codes else self.embedding.weight

    @property
    def codes(self) -> Tensor:
        """(K, D) codes in the lookup space (unit length with ``l2_codes``)."""
        return self.embedding.weight

    def to_lookup(self, z: Tensor) -> Tensor:
        """Encoder latent (B, E, H, W) -> lookup space (B, D, H, W): projected and/or normalised in float32.

        Autocast is off, so the lookup space of a training step (under bf16 autocast) and of ``degrade`` agree. With
        no option on, ``z`` is returned as it is.
        """
        if not (self.factorized or self.l2_codes):
            return z
        with torch.autocast(z.device.type, enabled=False):
            if self.factorized:
                z = self.proj_in(z.to(self.proj_in.weight.dtype))
            z = z.float()
            return F.normalize(z, dim=1) if self.l2_codes else z

    def from_lookup(self, zq: Tensor) -> Tensor:
        """Quantised latent in the lookup space (B, D, H, W) -> decoder input (B, E, H, W)."""
        return self.proj_out(zq.to(self.proj_out.weight.dtype)) if self.factorized else zq

    def _flat(self, func: str, z: Tensor) -> Tensor:
        if z.dim() != 4 or z.shape[1] != self.dim:
            raise ValueError(f"VectorQuantizer.{func}: expected z (B, {self.dim}, H, W), got {tuple(z.shape)}")
        return z.permute(0, 2, 3, 1).reshape(-1, self.dim)  # (B*H*W, D)

    def _lookup(self, idx: Tensor, z: Tensor) -> Tensor:
        b, _, h, w = z.shape
        return F.embedding(idx, self.codes).view(b, h, w, -1).permute(0, 3, 1, 2).to(z.dtype)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """z (B, D, H, W) in the lookup space -> (zq with straight-through gradient, VQ loss, indices (B, H, W))."""
        idx = nearest_indices(self._flat("forward", z).detach(), self.codes.detach(), self.chunk)
        zq = self._lookup(idx, z)
        loss = torch.mean((zq.detach() - z) ** 2)  # commitment
        if not self.ema_decay:
            loss = loss + self.beta * torch.mean((zq - z.detach()) ** 2)  # codebook term (EMA: none)
        zq = z + (zq - z).detach()  # straight-through estimator
        return zq, loss, idx.view(z.shape[0], z.shape[2], z.shape[3])

    def kth_nearest(self, z: Tensor, k: int) -> Tensor:
        """z (B, D, H, W) in the lookup space -> every position replaced by exactly its k-th nearest code."""
        idx = kth_nearest_indices(self._flat("kth_nearest", z).detach(), self.codes.detach(), k, self.chunk)
        return self._lookup(idx, z)

    @torch.no_grad()
    def set_codes_(self, index: Tensor, vectors: Tensor) -> None:
        """Put ``vectors`` (n, D), lookup-space latents, at codes ``index`` (n,); their EMA statistics start afresh."""
        w = self.codebook
        w[index] = vectors.to(w.device, w.dtype)
        if self.ema_decay:
            self.ema_count[index] = 0
            self.ema_sum[index] = 0

    @torch.no_grad()
    def init_codes_(self, z_flat: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """k-means of lookup-space latents ``z_flat`` (N, D) becomes the codebook (SoundStream); cluster sizes (K,)."""
        if z_flat.dim() != 2 or z_flat.shape[1] != self.dim:
            raise ValueError(f"VectorQuantizer.init_codes_: expected (N, {self.dim}), got {tuple(z_flat.shape)}")
        centroids, counts = kmeans(z_flat, self.n_embed, spherical=self.l2_codes, generator=generator)
        self.set_codes_(torch.arange(self.n_embed, device=self.codebook.device), centroids)
        return counts

    @torch.no_grad()
    def ema_update_(self, counts: Tensor, sums: Tensor) -> None:
        """One EMA step from this step's ``assignment_sums`` (all branches; under DDP summed over ranks first).

        count <- d count + (1 - d) counts; sum <- d sum + (1 - d) sums; code = sum / Laplace-smoothed count. A code
        nothing was assigned to since its last (re)set keeps its vector (its count is still 0).
        """
        if not self.ema_decay:
            raise RuntimeError("VectorQuantizer.ema_update_: this quantizer trains its codebook by loss (ema_decay=0)")
        d, eps = self.ema_decay, LAPLACE_EPS
        self.ema_count.mul_(d).add_(counts.to(self.ema_count), alpha=1 - d)
        self.ema_sum.mul_(d).add_(sums.to(self.ema_sum), alpha=1 - d)
        n = self.ema_count.sum()
        smoothed = (self.ema_count + eps) / (n + self.n_embed * eps) * n  # (K,), never 0 where count > 0
        live = self.ema_count > 0
        w = self.codebook
        w[live] = (self.ema_sum[live] / smoothed[live, None]).to(w.dtype)
