"""VGG16 ``features`` (13 convolutions) in torchvision's layout, without torchvision.

Parameter names match ``torchvision.models.vgg16().features`` (``features.0.weight`` ... ``features.28.bias``),
so torchvision state dicts load as they are. ``forward`` returns the requested activations by name: ``convX_Y``
is the convolution output *before* its ReLU (BasicSR's perceptual loss), ``reluX_Y`` the output after it (LPIPS).
The network stops after the deepest requested layer.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# (block, convs per block, channels): 2+2+3+3+3 = 13 convs, max-pool after each block
CFG = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_LAYERS = ("conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3")


def _layer_names() -> list[str]:
    """Name of each entry of ``features`` in torchvision order (conv, relu, ..., pool)."""
    names = []
    for block, n, _ in CFG:
        for i in range(1, n + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return names


LAYER_NAMES = tuple(_layer_names())  # 31 entries, e.g. conv1_1 = features.0, conv5_3 = features.28


class VGG16Features(nn.Module):
    """VGG16 convolutional trunk returning a dict of named activations (see module docstring)."""

    def __init__(self, layers: tuple[str, ...] | list[str] = DEFAULT_LAYERS, normalize: bool = False) -> None:
        super().__init__()
        layers = tuple(layers)
        bad = [name for name in layers if name not in LAYER_NAMES]
        if not layers or bad:
            raise ValueError(f"VGG16Features: unknown layer name(s) {bad or '(none given)'}; known: {LAYER_NAMES}")
        self.layers = layers
        self.normalize = normalize
        modules: list[nn.Module] = []
        in_ch = 3
        for _, n, ch in CFG:
            for _ in range(n):
                modules += [nn.Conv2d(in_ch, ch, 3, 1, 1), nn.ReLU(inplace=False)]
                in_ch = ch
            modules.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*modules)
        self._last = max(LAYER_NAMES.index(name) for name in layers)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """(B, 3, H, W) -> {name: (B, C, H / 2^k, W / 2^k)}; ``x`` in [0, 1] when ``normalize`` else normalised."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"VGG16Features.forward: expected (B, 3, H, W), got {tuple(x.shape)}")
        if self.normalize:
            x = (x - self.mean) / self.std
        out = {}
        for i, layer in enumerate(self.features[: self._last + 1]):
            x = layer(x)
            if LAYER_NAMES[i] in self.layers:
                out[LAYER_NAMES[i]] = x
        return out
