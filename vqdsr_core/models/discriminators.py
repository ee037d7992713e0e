"""Discriminators: the VSR GAN's multi-scale spectral-norm PatchGAN and the VQGAN's BatchNorm PatchGAN (taming).

Both are per-frame 2D PatchGANs: conv4 s2 blocks then two conv4 s1 layers, one logit per patch (no sigmoid).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm


def _patch_out(size: int, n_layers: int) -> int:
    """Spatial size of a PatchGAN output: n_layers conv4 s2 p1 (halving), then two conv4 s1 p1 (each -1)."""
    for _ in range(n_layers):
        size = (size + 2 - 4) // 2 + 1
    return size - 2


def _check_input(func: str, x: Tensor, in_ch: int) -> None:
    if x.dim() != 4 or x.shape[1] != in_ch:
        raise ValueError(f"{func}: expected (B, {in_ch}, H, W), got {tuple(x.shape)}")


def _channels(ndf: int, n_layers: int) -> list[int]:
    """Channel widths after each conv except the last: ndf * min(2^i, 8) for i = 0..n_layers."""
    return [ndf * min(2**i, 8) for i in range(n_layers + 1)]


class SNPatchDiscriminator(nn.Module):
    """PatchGAN with spectral norm on every conv, biases, no normalisation layer (BasicSR style, use_sn=True).

    n_layers=3: conv4 s2 in->64, s2 64->128, s2 128->256, s1 256->512, s1 512->1; LeakyReLU 0.2 between.
    """

    def __init__(self, in_ch: int = 3, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        if n_layers < 1 or ndf < 1:
            raise ValueError(f"SNPatchDiscriminator: n_layers and ndf must be >= 1, got {n_layers}, {ndf}")
        self.in_ch, self.n_layers = in_ch, n_layers
        chs = [in_ch, *_channels(ndf, n_layers)]
        layers: list[nn.Module] = []
        for i in range(n_layers + 1):
            stride = 2 if i < n_layers else 1
            layers += [spectral_norm(nn.Conv2d(chs[i], chs[i + 1], 4, stride, 1)), nn.LeakyReLU(0.2, True)]
        layers.append(spectral_norm(nn.Conv2d(chs[-1], 1, 4, 1, 1)))
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_ch, H, W) -> patch logits (B, 1, ~H/2^n - 2, ~W/2^n - 2)."""
        return self.body(x)


class MultiScalePatchDiscriminator(nn.Module):
    """``num_scales`` spectral-norm PatchGANs; scale i sees the input bilinearly halved i times (align_corners=True).

    Used for the VSR GAN stage (AnimeSR / VQD-SR ``MultiScaleDiscriminator`` with use_downscale, use_sn, norm none).
    About 2.76M parameters per scale at ndf=64.
    """

    def __init__(self, num_scales: int = 3, ndf: int = 64, in_ch: int = 3, n_layers: int = 3) -> None:
        super().__init__()
        if num_scales < 1:
            raise ValueError(f"MultiScalePatchDiscriminator: num_scales must be >= 1, got {num_scales}")
        self.in_ch, self.n_layers = in_ch, n_layers
        self.discs = nn.ModuleList(SNPatchDiscriminator(in_ch, ndf, n_layers) for _ in range(num_scales))

    def forward(self, x: Tensor) -> list[Tensor]:
        """(B, in_ch, H, W) -> one patch-logit map per scale, finest first."""
        func = "MultiScalePatchDiscriminator.forward"
        _check_input(func, x, self.in_ch)
        h, w = x.shape[-2:]
        h_last, w_last = h >> (len(self.discs) - 1), w >> (len(self.discs) - 1)
        if min(_patch_out(h_last, self.n_layers), _patch_out(w_last, self.n_layers)) < 1:
            raise ValueError(
                f"{func}: input {h}x{w} is too small for {len(self.discs)} scales (the coarsest sees {h_last}x{w_last})"
            )
        outs = []
        for i, disc in enumerate(self.discs):
            if i:
                h, w = h // 2, w // 2
                x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=True)
            outs.append(disc(x))
        return outs


class NLayerDiscriminator(nn.Module):
    """taming's PatchGAN for VQGAN training: conv4 s2 -> [conv4 s2, BN] x (n-1) -> [conv4 s1, BN] -> conv4 s1 -> 1.

    LeakyReLU 0.2; convs followed by BatchNorm have no bias; init N(0, 0.02) (BN weight N(1, 0.02), bias 0).
    About 2.77M parameters at ndf=64, n_layers=3.
    """

    def __init__(self, in_ch: int = 3, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        if n_layers < 1 or ndf < 1:
            raise ValueError(f"NLayerDiscriminator: n_layers and ndf must be >= 1, got {n_layers}, {ndf}")
        self.in_ch, self.n_layers = in_ch, n_layers
        chs = _channels(ndf, n_layers)
        layers: list[nn.Module] = [nn.Conv2d(in_ch, chs[0], 4, 2, 1), nn.LeakyReLU(0.2, True)]
        for i in range(1, n_layers + 1):
            stride = 2 if i < n_layers else 1
            layers += [
                nn.Conv2d(chs[i - 1], chs[i], 4, stride, 1, bias=False),
                nn.BatchNorm2d(chs[i]),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(chs[-1], 1, 4, 1, 1))
        self.main = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_ch, H, W) -> patch logits (B, 1, H', W')."""
        func = "NLayerDiscriminator.forward"
        _check_input(func, x, self.in_ch)
        if min(_patch_out(x.shape[2], self.n_layers), _patch_out(x.shape[3], self.n_layers)) < 1:
            raise ValueError(f"{func}: input {x.shape[2]}x{x.shape[3]} is too small for {self.n_layers} layers")
        return self.main(x)
