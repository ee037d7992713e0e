"""The LR clip synthesis of VQD-SR: ``x = Codec(VQD(Down(Noise(Blur(y)))))``, deterministic per seed.

``sample_params(cfg, rng)`` draws everything for one clip as a JSON-serialisable dict; ``degrade_clip(hr, params)``
applies it (bit-identical on re-application); ``make_pair(hr, seed, cfg)`` does both. VQD is optional
(``vq=False``: AnimeSR's basic operators, the first VSR stage). Old-media extras (``analog_probs``) run at LR after
the downscale, before VQD. The contrast variant of the fine-tune stage (``vq_contrast``) lowers the LR contrast
by k_bottom/255 after the codec.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from . import check_clip, check_rng, quantize8
from .analog import ANALOG_OPS, apply_analog, sample_analog
from .blur import apply_blur, sample_blur
from .codec import apply_codec, sample_codec
from .noise import add_gaussian_noise, sample_noise
from .resize import apply_down, sample_down
from .vq import sample_vq, vq_degrade

PARAMS_VERSION = 1


@dataclass
class DegradationConfig:
    """Every range and probability of the pipeline; defaults are the paper's (VQD off)."""

    scale: int = 4
    num_frames: int = 15  # frames per clip when sample_params is not told
    # blur (one kernel per clip)
    blur_prob: float = 1.0
    blur_kernel_size: int = 21
    blur_iso_prob: float = 0.7
    blur_iso_sigma: tuple[float, float] = (0.2, 4.0)
    blur_aniso_sigma_x: tuple[float, float] = (0.2, 4.0)
    blur_aniso_sigma_y: tuple[float, float] = (0.8, 3.0)
    # Gaussian noise at HR (per frame)
    noise_prob: float = 1.0
    noise_sigma: tuple[float, float] = (0.0, 10.0)  # 0..255 scale
    noise_gray_prob: float = 0.5
    # x scale downscale (per clip)
    down_modes: tuple[str, ...] = ("area", "bilinear", "bicubic")
    down_probs: tuple[float, ...] = (0.3, 0.3, 0.4)
    down_antialias: bool = True
    # old-media extras at LR: {operator: probability}, {operator: sampler keywords}
    analog_probs: dict[str, float] = field(default_factory=dict)
    analog_options: dict[str, dict] = field(default_factory=dict)
    # VQ degradation (needs a trained MultiScaleVQGAN)
    vq: bool = False
    vq_k_top: tuple[int, int] = (1, 1)
    vq_k_mid: tuple[int, int] = (1, 10)
    vq_k_bottom_levels: tuple[tuple[int, int], ...] = ((1, 15), (16, 30), (31, 50))
    vq_k_bottom_probs: tuple[float, ...] = (0.3, 0.4, 0.3)
    vq_keep_colour: float = 0.0  # px; > 0 keeps the input's low-pass (colours) under the VQ reconstruction
    vq_contrast: bool = False
    # lossy codec (per clip)
    codec_prob: float = 1.0
    codecs: tuple[str, ...] = ("h264",)
    codec_probs: tuple[float, ...] = (1.0,)
    crf: tuple[float, float] = (18.0, 35.0)
    h264_profiles: tuple[str, ...] = ("baseline", "main", "high")
    h264_profile_probs: tuple[float, ...] = (0.1, 0.2, 0.7)
    codec_qscale: tuple[int, int] = (4, 31)  # MPEG-2 / MPEG-4 fixed quantiser
    codec_generations: tuple[int, int] = (1, 1)
    codec_preset: str = "medium"

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # JSON lists -> tuples
            v = getattr(self, f.name)
            if isinstance(v, list):
                setattr(self, f.name, tuple(tuple(x) if isinstance(x, list) else x for x in v))
        for name in ("blur_prob", "noise_prob", "codec_prob"):
            p = getattr(self, name)
            if not isinstance(p, int | float) or not 0 <= p <= 1:
                raise ValueError(f"DegradationConfig: {name} must be a probability in [0, 1], got {p!r}")
        if not isinstance(self.scale, int) or self.scale < 1:
            raise ValueError(f"DegradationConfig: scale must be a positive integer, got {self.scale!r}")
        if not isinstance(self.num_frames, int) or self.num_frames < 1:
            raise ValueError(f"DegradationConfig: num_frames must be a positive integer, got {self.num_frames!r}")
        if not isinstance(self.analog_probs, dict) or not isinstance(self.analog_options, dict):
            raise ValueError("DegradationConfig: analog_probs and analog_options must be dicts keyed by operator")
        try:  # every sampler validates its own ranges: draw once, everything enabled
            sample_analog(np.random.default_rng(0), self.analog_probs, self.analog_options)
            _sample(self, np.random.default_rng(0), self.num_frames, force=True)
        except (TypeError, ValueError) as e:
            raise ValueError(f"DegradationConfig: {e}") from e

    @classmethod
    def from_dict(cls, d: dict) -> DegradationConfig:
        """Build from a (JSON) dict; unknown keys are an error."""
        if not isinstance(d, dict):
            raise ValueError(f"DegradationConfig.from_dict: expected a dict, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"DegradationConfig.from_dict: unknown keys {unknown}; known: {sorted(known)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def old_media(cls, composite_prob: float = 0.5) -> DegradationConfig:
        """Preset for ``make-lq``: no downscale (scale 1), mild blur/noise, analogue extras, MPEG-2 / H.264 / MPEG-4
        with 1-3 generations: a surrogate for real SD-era anime (DVD, tape, broadcast, early web video)."""
        return cls(
            scale=1,
            blur_prob=0.6,
            blur_kernel_size=15,
            blur_iso_sigma=(0.3, 1.5),
            blur_aniso_sigma_x=(0.3, 1.5),
            blur_aniso_sigma_y=(0.3, 1.2),
            noise_prob=0.5,
            noise_sigma=(0.0, 6.0),
            down_modes=("area",),
            down_probs=(1.0,),
            analog_probs={
                "aliasing": 0.2,
                "ringing": 0.5,
                "composite": composite_prob,
                "chroma_bleed": 0.5,
                "chroma_shift": 0.3,
            },
            codecs=("h264", "mpeg2", "mpeg4"),
            codec_probs=(0.4, 0.4, 0.2),
            crf=(23.0, 38.0),
            h264_profile_probs=(0.2, 0.4, 0.4),
            codec_qscale=(3, 20),
            codec_generations=(1, 3),
        )


def _sample(cfg: DegradationConfig, rng: np.random.Generator, num_frames: int, force: bool = False) -> dict:
    def hit(p: float) -> bool:
        return force or bool(rng.random() < p)

    blur = noise = codec = None
    if hit(cfg.blur_prob):
        blur = sample_blur(
            rng,
            kernel_size=cfg.blur_kernel_size,
            iso_prob=cfg.blur_iso_prob,
            iso_sigma=cfg.blur_iso_sigma,
            aniso_sigma_x=cfg.blur_aniso_sigma_x,
            aniso_sigma_y=cfg.blur_aniso_sigma_y,
        )
    if hit(cfg.noise_prob):
        noise = sample_noise(rng, num_frames, sigma=cfg.noise_sigma, gray_prob=cfg.noise_gray_prob)
    down = sample_down(rng, modes=cfg.down_modes, probs=cfg.down_probs, scale=cfg.scale, antialias=cfg.down_antialias)
    probs = {k: 1.0 for k in ANALOG_OPS} if force else cfg.analog_probs
    analog = sample_analog(rng, probs, cfg.analog_options) if probs else None
    if analog is not None and all(v is None for v in analog.values()):
        analog = None
    vq = None
    if cfg.vq or force:
        vq = sample_vq(
            rng,
            k_top=cfg.vq_k_top,
            k_mid=cfg.vq_k_mid,
            k_bottom_levels=cfg.vq_k_bottom_levels,
            k_bottom_probs=cfg.vq_k_bottom_probs,
            keep_colour=cfg.vq_keep_colour,
        )
    if hit(cfg.codec_prob):
        codec = sample_codec(
            rng,
            codecs=cfg.codecs,
            codec_probs=cfg.codec_probs,
            crf=cfg.crf,
            profiles=cfg.h264_profiles,
            profile_probs=cfg.h264_profile_probs,
            qscale=cfg.codec_qscale,
            generations=cfg.codec_generations,
        )
        codec["preset"] = cfg.codec_preset
    contrast = float(vq["k_bottom"]) if (cfg.vq and cfg.vq_contrast and vq) else None
    return {
        "version": PARAMS_VERSION,
        "num_frames": int(num_frames),
        "blur": blur,
        "noise": noise,
        "down": down,
        "analog": analog,
        "vq": vq if cfg.vq else None,
        "codec": codec,
        "contrast": contrast,
    }


def sample_params(cfg: DegradationConfig, rng: np.random.Generator, num_frames: int | None = None) -> dict:
    """Draw every degradation parameter of one clip (``num_frames`` defaults to ``cfg.num_frames``)."""
    if not isinstance(cfg, DegradationConfig):
        raise TypeError(f"sample_params: cfg must be a DegradationConfig, got {type(cfg).__name__}")
    check_rng(rng, "sample_params")
    n = cfg.num_frames if num_frames is None else num_frames
    if int(n) != n or n < 1:
        raise ValueError(f"sample_params: num_frames must be a positive integer, got {num_frames!r}")
    return _sample(cfg, rng, int(n))


def degrade_clip(hr: Tensor, params: dict, vqgan: nn.Module | None = None, info: dict | None = None) -> Tensor:
    """Apply ``params`` (from ``sample_params``) to an HR clip (N, 3, H, W) -> LR clip on the 8-bit grid.

    H and W must be multiples of the scale. ``info`` (optional dict) receives {"codec_bytes": [...]}.
    """
    check_clip(hr, "degrade_clip")
    if not isinstance(params, dict) or params.get("version") != PARAMS_VERSION:
        raise ValueError(f"degrade_clip: params must come from sample_params (version {PARAMS_VERSION})")
    if params["num_frames"] != hr.shape[0]:
        raise ValueError(f"degrade_clip: params are for {params['num_frames']} frames, the clip has {hr.shape[0]}")
    if params.get("vq") is not None and vqgan is None:
        raise ValueError("degrade_clip: params include a VQ degradation but no vqgan was given")
    x = hr
    if params.get("blur"):
        x = apply_blur(x, params["blur"])
    if params.get("noise"):
        x = add_gaussian_noise(x, params["noise"])
    x = apply_down(x, params["down"])
    if params.get("analog"):
        x = apply_analog(x, params["analog"])
    if params.get("vq"):
        x = vq_degrade(x, vqgan, params["vq"])
    x = quantize8(x)
    if params.get("codec"):
        x, sizes = apply_codec(x, params["codec"], preset=params["codec"].get("preset", "medium"))
        if info is not None:
            info["codec_bytes"] = sizes
    if params.get("contrast") is not None:  # img - (img - 127) * c / 255 on the 8-bit scale
        c = float(params["contrast"])
        x = quantize8(x - (x - 127 / 255) * c / 255)
    return x


def mod_crop(clip: Tensor, modulus: int) -> Tensor:
    """Crop bottom/right so H and W are multiples of ``modulus``."""
    h, w = clip.shape[-2:]
    return clip[..., : h - h % modulus, : w - w % modulus]


def make_pair(
    hr: Tensor, seed: int, cfg: DegradationConfig | None = None, vqgan: nn.Module | None = None
) -> tuple[Tensor, Tensor, dict]:
    """Degrade an HR clip with everything drawn from ``seed`` -> (LR, HR mod-cropped to the scale, params)."""
    cfg = cfg or DegradationConfig()
    check_clip(hr, "make_pair", min_size=cfg.scale)
    if cfg.vq and vqgan is None:
        raise ValueError("make_pair: cfg.vq is True but no vqgan was given")
    if vqgan is not None and not cfg.vq:
        raise ValueError("make_pair: a vqgan was given but cfg.vq is False; set vq=True to use it")
    if not isinstance(seed, int | np.integer) or math.isnan(float(seed)):
        raise TypeError(f"make_pair: seed must be an integer, got {seed!r}")
    hr = mod_crop(hr, cfg.scale)
    params = sample_params(cfg, np.random.default_rng(int(seed)), hr.shape[0])
    with torch.no_grad():
        lr = degrade_clip(hr, params, vqgan)
    return lr, hr, params
