"""SRVGGNetCompact: Real-ESRGAN's compact VGG-style x4 network (realesr-animevideov3).

A plain stack of 3x3 convolutions with per-channel activations at LR resolution, a PixelShuffle to HR and a
nearest-neighbour upsampled copy of the input added as the base image. Parameter names follow Real-ESRGAN
(``body.0`` first conv, ``body.1`` its activation, ..., last conv), so its ``.pth`` state dicts load as they are.
With the defaults (64 features, 16 convs, PReLU, x4) it has 621,424 parameters.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

ACTIVATIONS = ("prelu", "relu", "leakyrelu")


def _activation(kind: str, num_feat: int) -> nn.Module:
    if kind == "prelu":
        return nn.PReLU(num_parameters=num_feat)
    if kind == "relu":
        return nn.ReLU(inplace=True)
    return nn.LeakyReLU(0.1, inplace=True)


class SRVGGNetCompact(nn.Module):
    """conv -> act -> num_conv x (conv -> act) -> conv to out*upscale^2 -> PixelShuffle, plus nearest-up input."""

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        num_conv: int = 16,
        upscale: int = 4,
        act_type: str = "prelu",
    ) -> None:
        super().__init__()
        if act_type not in ACTIVATIONS:
            raise ValueError(f"SRVGGNetCompact: act_type must be one of {ACTIVATIONS}, got {act_type!r}")
        for name, value in (("num_in_ch", num_in_ch), ("num_out_ch", num_out_ch), ("num_feat", num_feat)):
            if value < 1:
                raise ValueError(f"SRVGGNetCompact: {name} must be >= 1, got {value}")
        if num_in_ch not in (1, num_out_ch):
            raise ValueError(f"SRVGGNetCompact: num_in_ch must be 1 or num_out_ch ({num_out_ch}), got {num_in_ch}")
        if num_conv < 0 or upscale < 1:
            raise ValueError(f"SRVGGNetCompact: need num_conv >= 0 and upscale >= 1, got {num_conv}, {upscale}")
        self.num_in_ch, self.num_out_ch, self.upscale = num_in_ch, num_out_ch, upscale
        layers: list[nn.Module] = [nn.Conv2d(num_in_ch, num_feat, 3, 1, 1), _activation(act_type, num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), _activation(act_type, num_feat)]
        layers.append(nn.Conv2d(num_feat, num_out_ch * upscale * upscale, 3, 1, 1))
        self.body = nn.ModuleList(layers)
        self.upsampler = nn.PixelShuffle(upscale)

    def forward(self, x: Tensor) -> Tensor:
        """(B, in, h, w) in [0, 1] -> (B, out, h*upscale, w*upscale)."""
        if x.ndim != 4 or x.shape[1] != self.num_in_ch:
            raise ValueError(f"SRVGGNetCompact.forward: expected (B, {self.num_in_ch}, H, W), got {tuple(x.shape)}")
        out = x
        for layer in self.body:
            out = layer(out)  # (B, 64, h, w); last: (B, out*r*r, h, w)
        out = self.upsampler(out)  # (B, out, h*r, w*r)
        return out + F.interpolate(x, scale_factor=self.upscale, mode="nearest")  # base image (broadcast if 1 ch)
