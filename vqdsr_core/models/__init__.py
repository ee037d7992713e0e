"""Networks of VQD-SR and the architecture registry used by weight files.

A weight file names its architecture; ``ARCHITECTURES`` maps that name to the class that builds it (imported
lazily, so that loading one network never imports the others).
"""

from __future__ import annotations

import importlib

from torch import nn

# name -> (module, class, keyword arguments fixed by the name)
ARCHITECTURES: dict[str, tuple[str, str, dict]] = {
    "vqdsr_vsr": ("vqdsr_core.models.vsr", "RecurrentVSRNet", {"feedback": False}),
    "animesr_vsr": ("vqdsr_core.models.vsr", "RecurrentVSRNet", {"feedback": True}),
    "multiscale_vqgan": ("vqdsr_core.models.vqgan", "MultiScaleVQGAN", {}),
    "srvgg_compact": ("vqdsr_core.models.srvgg", "SRVGGNetCompact", {}),
    "vgg16_features": ("vqdsr_core.models.vgg", "VGG16Features", {}),
}


def build_model(arch: str, config: dict | None = None) -> nn.Module:
    """Instantiate the registered architecture ``arch`` with ``config`` keyword arguments."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"build_model: unknown architecture {arch!r}; known: {sorted(ARCHITECTURES)}")
    module, cls, fixed = ARCHITECTURES[arch]
    kwargs = dict(config or {})
    clash = {k for k in fixed if k in kwargs and kwargs[k] != fixed[k]}
    if clash:
        raise ValueError(f"build_model: {arch!r} fixes {sorted(clash)}; config says otherwise")
    kwargs.update(fixed)
    try:
        return getattr(importlib.import_module(module), cls)(**kwargs)
    except TypeError as e:
        raise ValueError(f"build_model: bad config for {arch!r}: {e}") from e
