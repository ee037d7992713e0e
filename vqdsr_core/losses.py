"""Training losses of VQD-SR / AnimeSR (BasicSR semantics) and of the VQGAN (taming semantics).

- ``l1_loss``: mean absolute error.
- ``lowpass_l1``: L1 between block means (the VQGAN's colour term: its error sits in low-frequency colour shifts).
- ``usm_sharpen``: BasicSR ``USMSharp`` (unsharp mask with a thresholded soft mask) for the net-stage L1 target.
- ``PerceptualLoss``: L1 between VGG features before ReLU, frame-wise. The papers use VGG19 conv1_2..conv5_4; no
  registry package ships VGG19, so VGG16 conv1_2/2_2/3_3/4_3/5_3 stands in with the same weights (0.1, 0.1, 1, 1, 1).
- Temporal (neither reference has one): ``temporal_difference_loss`` (FISR: consecutive SR differences should
  match consecutive GT differences) and ``pingpong_loss`` (TecoGAN: a frame's output from the forward pass should
  equal its output from the reversed pass), both Charbonnier; ``pingpong_clip`` builds the mirrored clip.
- GAN: ``lsgan_loss`` (MSE, averaged over multi-scale outputs), ``hinge_d_loss`` / ``hinge_g_loss`` and the
  VQGAN adaptive weight ``vq_adaptive_weight``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

DEFAULT_LAYER_WEIGHTS: dict[str, float] = {
    "conv1_2": 0.1,
    "conv2_2": 0.1,
    "conv3_3": 1.0,
    "conv4_3": 1.0,
    "conv5_3": 1.0,
}


def _check_images(func: str, *tensors: Tensor) -> None:
    shape = tensors[0].shape
    for t in tensors:
        if not isinstance(t, Tensor) or t.ndim not in (4, 5) or t.shape[-3] != 3:
            got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"{func}: expected (B, 3, H, W) or (B, N, 3, H, W) tensors, got {got}")
        if t.shape != shape:
            raise ValueError(f"{func}: shapes differ: {tuple(shape)} vs {tuple(t.shape)}")


def l1_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error over all elements."""
    if pred.shape != target.shape:
        raise ValueError(f"l1_loss: shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    return F.l1_loss(pred, target)


def lowpass_l1(pred: Tensor, target: Tensor, block: int = 8) -> Tensor:
    """L1 between ``block`` x ``block`` means of (B, C, H, W) images: colour and brightness offsets over areas,
    which a per-pixel L1 weighs no more than one pixel's detail (a trailing partial block is left out)."""
    if pred.shape != target.shape or pred.ndim != 4:
        raise ValueError(
            f"lowpass_l1: expected two (B, C, H, W) tensors of one shape, got {tuple(pred.shape)} "
            f"and {tuple(target.shape)}"
        )
    if block < 1 or min(pred.shape[-2:]) < block:
        raise ValueError(f"lowpass_l1: block must be in [1, {min(pred.shape[-2:])}] for these images, got {block}")
    return F.l1_loss(F.avg_pool2d(pred, block), F.avg_pool2d(target, block))


@functools.cache
def _gaussian_1d(ksize: int, sigma: float) -> Tensor:
    """Normalised 1D Gaussian (OpenCV ``getGaussianKernel``; sigma <= 0 -> 0.3*((ksize-1)/2 - 1) + 0.8)."""
    if sigma <= 0:
        sigma = 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8
    x = torch.arange(ksize, dtype=torch.float64) - (ksize - 1) / 2
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return (k / k.sum()).float()


def gaussian_blur(img: Tensor, ksize: int, sigma: float = 0.0) -> Tensor:
    """Separable Gaussian blur of (B, C, H, W) with reflect padding (replicate where the image is too small)."""
    if img.ndim != 4 or ksize < 1 or ksize % 2 == 0:
        raise ValueError(f"gaussian_blur: need (B, C, H, W) and an odd ksize, got {tuple(img.shape)}, {ksize}")
    k = _gaussian_1d(ksize, sigma).to(img.device, img.dtype)
    c, r = img.shape[1], ksize // 2
    mode = "reflect" if min(img.shape[-2:]) > r else "replicate"
    x = F.pad(img, (r, r, r, r), mode=mode)
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, ksize), groups=c)  # along W
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, ksize, 1), groups=c)  # along H


def usm_sharpen(img: Tensor, weight: float = 0.5, radius: int = 50, threshold: float = 10) -> Tensor:
    """Unsharp-masked copy of ``img`` (B, 3, H, W) or (B, N, 3, H, W) in [0, 1] (BasicSR ``USMSharp``).

    Gaussian kernel of size ``radius`` (made odd: 50 -> 51, sigma 8 by OpenCV's rule); residual = img - blur;
    mask = |residual| * 255 > threshold, softened by the same blur; out = mask*clip(img + weight*residual) +
    (1 - mask)*img.
    """
    _check_images("usm_sharpen", img)
    if radius < 1:
        raise ValueError(f"usm_sharpen: radius must be >= 1, got {radius}")
    shape = img.shape
    x = img.reshape(-1, *shape[-3:])
    ksize = radius + 1 if radius % 2 == 0 else radius
    blur = gaussian_blur(x, ksize)
    residual = x - blur
    mask = (residual.abs() * 255 > threshold).to(x.dtype)
    soft_mask = gaussian_blur(mask, ksize)
    sharp = (x + weight * residual).clamp(0, 1)
    return (soft_mask * sharp + (1 - soft_mask) * x).reshape(shape)


def charbonnier(x: Tensor, eps: float = 1e-3) -> Tensor:
    """Mean of sqrt(x^2 + eps^2): L1 that is smooth at 0."""
    return torch.sqrt(x.float().square() + eps * eps).mean()


def _check_clips(func: str, a: Tensor, b: Tensor, min_frames: int = 2) -> None:
    if a.ndim != 5 or a.shape != b.shape or a.shape[1] < min_frames:
        raise ValueError(
            f"{func}: expected two (B, N, C, H, W) clips of the same shape with N >= {min_frames}, "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def temporal_difference_loss(sr: Tensor, gt: Tensor, eps: float = 1e-3, hold_weight: float = 1.0) -> Tensor:
    """Charbonnier on (SR_t - SR_{t-1}) - (GT_t - GT_{t-1}) over clips (B, N, 3, H, W): the temporal error metric
    as a loss; on a still stretch it is plain flicker, in motion it asks for the GT's change, not more or less.

    ``hold_weight`` scales the pairs whose GT frames are identical (a held drawing: there the whole term is
    flicker); the result is the mean over all pairs, so 1 is the plain loss."""
    _check_clips("temporal_difference_loss", sr, gt)
    if hold_weight < 0:
        raise ValueError(f"temporal_difference_loss: hold_weight must be >= 0, got {hold_weight}")
    d_gt = gt[:, 1:] - gt[:, :-1]
    err = (sr[:, 1:] - sr[:, :-1]) - d_gt
    if hold_weight == 1:
        return charbonnier(err, eps)
    per_pair = torch.sqrt(err.float().square() + eps * eps).mean((2, 3, 4))  # (B, N-1)
    held = d_gt.flatten(2).abs().amax(2) == 0
    return (per_pair * torch.where(held, hold_weight, 1.0)).mean()


def pingpong_clip(clip: Tensor) -> Tensor:
    """(B, N, ...) -> (B, 2N-1, ...): frames 0..N-1, then N-2..0 (TecoGAN's ping-pong sequence)."""
    if clip.ndim != 5 or clip.shape[1] < 2:
        raise ValueError(f"pingpong_clip: expected a (B, N, C, H, W) clip with N >= 2, got {tuple(clip.shape)}")
    return torch.cat([clip, clip.flip(1)[:, 1:]], dim=1)


def pingpong_loss(sr_pp: Tensor, eps: float = 1e-3) -> Tensor:
    """Charbonnier between the forward and the backward outputs of the same frames of a ping-pong output
    (B, 2N-1, 3, H, W) (``pingpong_clip`` order): what the recurrent state carries one way and not the other."""
    n2 = sr_pp.shape[1] if sr_pp.ndim == 5 else 0
    if n2 < 3 or n2 % 2 == 0:
        raise ValueError(f"pingpong_loss: expected a (B, 2N-1, 3, H, W) ping-pong output, got {tuple(sr_pp.shape)}")
    n = (n2 + 1) // 2
    return charbonnier(sr_pp[:, : n - 1] - sr_pp[:, n:].flip(1), eps)  # frame n-1 is the turn: shared


class PerceptualLoss(nn.Module):
    """Weighted L1 between VGG16 features (before ReLU) of prediction and target, frame-wise on (B*N) images.

    Inputs are in [0, 1]; ImageNet normalisation is applied inside. ``vgg`` may be any module that maps a
    normalised (B, 3, H, W) batch to a dict of the named features (default: the pretrained VGG16, frozen).
    """

    def __init__(
        self,
        layer_weights: Mapping[str, float] = DEFAULT_LAYER_WEIGHTS,
        perceptual_weight: float = 1.0,
        criterion: str = "l1",
        use_input_norm: bool = True,
        vgg: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if criterion not in ("l1", "l2"):
            raise ValueError(f"PerceptualLoss: criterion must be 'l1' or 'l2', got {criterion!r}")
        if not layer_weights:
            raise ValueError("PerceptualLoss: layer_weights is empty")
        self.layer_weights = dict(layer_weights)
        self.perceptual_weight = perceptual_weight
        self.criterion = F.l1_loss if criterion == "l1" else F.mse_loss
        if vgg is None:
            from .importers.vgg16 import load_vgg16

            vgg = load_vgg16(layers=tuple(self.layer_weights), normalize=False)
        self.vgg = vgg.eval().requires_grad_(False)
        self.use_input_norm = use_input_norm
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> PerceptualLoss:
        super().train(mode)
        self.vgg.eval()  # the feature extractor never leaves eval mode
        return self

    def _features(self, x: Tensor) -> dict[str, Tensor]:
        if self.use_input_norm:
            x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        return self.vgg(x)

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """Scalar loss; ``pred``/``target`` (B, 3, H, W) or (B, N, 3, H, W) in [0, 1]."""
        _check_images("PerceptualLoss", pred, target)
        pred, target = pred.reshape(-1, *pred.shape[-3:]), target.reshape(-1, *target.shape[-3:])
        fp = self._features(pred)
        with torch.no_grad():
            ft = self._features(target.detach())
        missing = [k for k in self.layer_weights if k not in fp]
        if missing:
            raise ValueError(f"PerceptualLoss: the feature extractor returned no {missing}")
        loss = sum(w * self.criterion(fp[k], ft[k]) for k, w in self.layer_weights.items())
        return loss * self.perceptual_weight


def _as_list(pred: Tensor | Sequence) -> list[Tensor]:
    """Flatten a discriminator output (tensor, or (nested) list of per-scale tensors) to a list of tensors."""
    if isinstance(pred, Tensor):
        return [pred]
    if isinstance(pred, Sequence) and pred:
        # pix2pixHD-style nested lists: the last entry of each inner list is the prediction
        return [p if isinstance(p, Tensor) else _as_list(p)[-1] for p in pred]
    raise ValueError(f"discriminator output must be a tensor or a non-empty list of tensors, got {type(pred).__name__}")


def lsgan_loss(pred_or_list: Tensor | Sequence[Tensor], target_is_real: bool) -> Tensor:
    """LSGAN: MSE of every prediction against 1 (real) or 0 (fake), averaged over the scales of a list."""
    preds = _as_list(pred_or_list)
    target = 1.0 if target_is_real else 0.0
    return torch.stack([F.mse_loss(p, torch.full_like(p, target)) for p in preds]).mean()


def hinge_d_loss(real: Tensor | Sequence[Tensor], fake: Tensor | Sequence[Tensor]) -> Tensor:
    """Hinge discriminator loss 0.5*(E relu(1 - D(x)) + E relu(1 + D(x̂))), averaged over scales of a list."""
    reals, fakes = _as_list(real), _as_list(fake)
    if len(reals) != len(fakes):
        raise ValueError(f"hinge_d_loss: {len(reals)} real outputs but {len(fakes)} fake outputs")
    per_scale = [0.5 * (F.relu(1 - r).mean() + F.relu(1 + f).mean()) for r, f in zip(reals, fakes)]
    return torch.stack(per_scale).mean()


def hinge_g_loss(fake: Tensor | Sequence[Tensor]) -> Tensor:
    """Generator side of the hinge GAN (taming): -E D(x̂), averaged over scales."""
    return torch.stack([-f.mean() for f in _as_list(fake)]).mean()


def vq_adaptive_weight(
    nll_loss: Tensor, g_loss: Tensor, last_layer: Tensor, disc_weight: float = 0.8, max_weight: float = 1e4
) -> Tensor:
    """VQGAN adaptive GAN weight: ‖∇nll‖ / (‖∇g‖ + 1e-4) at ``last_layer``, clamped to [0, 1e4], × disc_weight.

    Both losses must depend on ``last_layer`` (the decoder's conv_out weight); the result is detached.
    """
    if not last_layer.requires_grad:
        raise ValueError("vq_adaptive_weight: last_layer does not require grad (pass the decoder's conv_out weight)")
    try:
        nll_grad = torch.autograd.grad(nll_loss, last_layer, retain_graph=True)[0]
        g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    except RuntimeError as e:
        raise ValueError(f"vq_adaptive_weight: a loss does not depend on last_layer: {e}") from e
    weight = nll_grad.norm() / (g_grad.norm() + 1e-4)
    return (weight.clamp(0.0, max_weight) * disc_weight).detach()
