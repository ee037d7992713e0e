"""Vector quantiser of the VQGAN degradation model (taming's legacy VectorQuantizer2) and the k-th-nearest lookup.

Training uses plain nearest-code quantisation by squared L2 with a straight-through estimator. VQD-SR's degradation
replaces each latent by its **k-th** nearest code (one k for the whole call; k=1 is ordinary VQ). Distances are
computed in chunks of positions so that no (positions x n_embed) matrix larger than ``chunk x n_embed`` is built.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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


class VectorQuantizer(nn.Module):
    """Nearest-code VQ with straight-through gradients and taming's legacy loss.

    loss = mean((sg[zq] - z)^2) + beta * mean((zq - sg[z])^2): beta weighs the *codebook* term (taming's historical
    ordering, kept because the released VQD-SR model was trained with it). No EMA, no normalisation, no restarts.
    """

    def __init__(self, n_embed: int, embed_dim: int, beta: float = 0.25, chunk: int = DEFAULT_CHUNK) -> None:
        super().__init__()
        if n_embed < 1 or embed_dim < 1:
            raise ValueError(f"VectorQuantizer: n_embed and embed_dim must be >= 1, got {n_embed}, {embed_dim}")
        self.n_embed, self.embed_dim, self.beta, self.chunk = n_embed, embed_dim, float(beta), chunk
        self.embedding = nn.Embedding(n_embed, embed_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / n_embed, 1.0 / n_embed)

    def _flat(self, func: str, z: Tensor) -> Tensor:
        if z.dim() != 4 or z.shape[1] != self.embed_dim:
            raise ValueError(f"VectorQuantizer.{func}: expected z (B, {self.embed_dim}, H, W), got {tuple(z.shape)}")
        return z.permute(0, 2, 3, 1).reshape(-1, self.embed_dim)  # (B*H*W, D)

    def _lookup(self, idx: Tensor, z: Tensor) -> Tensor:
        b, _, h, w = z.shape
        return F.embedding(idx, self.embedding.weight).view(b, h, w, -1).permute(0, 3, 1, 2).to(z.dtype)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """z (B, D, H, W) -> (zq with straight-through gradient, VQ loss, indices (B, H, W))."""
        idx = nearest_indices(self._flat("forward", z).detach(), self.embedding.weight.detach(), self.chunk)
        zq = self._lookup(idx, z)
        loss = torch.mean((zq.detach() - z) ** 2) + self.beta * torch.mean((zq - z.detach()) ** 2)
        zq = z + (zq - z).detach()  # straight-through estimator
        return zq, loss, idx.view(z.shape[0], z.shape[2], z.shape[3])

    def kth_nearest(self, z: Tensor, k: int) -> Tensor:
        """z (B, D, H, W) -> every position replaced by exactly its k-th nearest code (no gradient to z)."""
        idx = kth_nearest_indices(self._flat("kth_nearest", z).detach(), self.embedding.weight.detach(), k, self.chunk)
        return self._lookup(idx, z)
