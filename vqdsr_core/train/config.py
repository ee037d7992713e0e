"""Training configs: TOML files checked against a schema, with ``--set section.key=value`` overrides.

A config has one table per concern (``run``, ``data``, ``model`` ...) plus one table per stage (``net``/``gan`` for
the VSR, ``top``/``multi`` for the VQGAN). Every key must exist in the schema and have the schema's type; anything
else is a :class:`ConfigError` raised before any work starts. Open tables (``degrade``, ``perceptual_layers``)
take any keys; their consumer checks them.
"""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path
from typing import Any

OPEN = "__open__"  # marker: a table whose keys are checked by its consumer

_RUN = {
    "seed": 0,
    "device": "auto",  # auto | cpu | cuda | cuda:N (DDP ranks use cuda:LOCAL_RANK)
    "precision": "fp32",  # fp32 | bf16 | fp16 | auto (fp16 on CUDA, bf16 on CPUs with native bf16, else fp32)
    "num_workers": 2,  # DataLoader worker processes per rank
    "worker_start": "spawn",  # spawn | forkserver | fork (fork is fastest but can deadlock in threaded parents)
    "threads": 0,  # torch.set_num_threads in the main process; 0 = leave torch's default
    "log_every": 50,
    "ckpt_every": 5000,
    "val_every": 5000,  # 0 = no periodic validation
    "sample_every": 1000,  # TensorBoard sample images; 0 = never
    "progress": True,  # tqdm bar on stderr (rank 0)
    "tensorboard": True,
}

# losses of both VSR stages that neither reference has (vqdsr_core.losses); 0 = off, as in the papers
_TEMPORAL: dict[str, Any] = {
    "temporal_weight": 0.0,  # Charbonnier on (SR_t - SR_t-1) - (GT_t - GT_t-1)
    "temporal_hold_weight": 1.0,  # x the temporal term on held pairs (GT_t == GT_t-1: all of it is flicker)
    "pingpong_weight": 0.0,  # train on the ping-pong clip (0..N-1..0); pull each frame's two outputs together
    "lpips_weight": 0.0,  # LPIPS-vgg (metrics.LPIPS: unit-normalised VGG16 features, learned lin heads) as a loss
    "lpips_frames": 0,  # LPIPS on this many randomly drawn frames of each step's clips; 0 = every frame
}
# the per-iteration LR schedule of every stage (train.loop.lr_scheduler); the default, no milestones, is constant
_SCHEDULE: dict[str, Any] = {
    "lr_schedule": "step",  # step: x gamma at each milestone | cosine: cosine decay to lr_min over total_iter
    "milestones": [],
    "gamma": 0.5,
    "lr_min": 0.0,
}
_PERCEPTUAL_LAYERS = {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_3": 1.0, "conv4_3": 1.0, "conv5_3": 1.0}

VSR_SCHEMA: dict[str, Any] = {
    "run": {**_RUN, "vq_device": "auto"},  # where the VQGAN degradation runs: auto | worker | main
    "data": {
        "train": [],  # frame folders / videos / roots of them (data.clips.ClipDataset)
        "val": "",  # held-out root; "" = no validation
        "num_frame": 15,
        "gt_size": 256,
        "degrade_size": 0,  # HR crop degraded whole, then cropped to gt_size (train.vsr.crop_pair); 0 = gt_size
        "intervals": [1, 2, 3],
        "still_prob": 0.0,  # probability that a training clip's motion stops (train.vsr.still_stretch)
        "hold_prob": 0.0,  # probability that a training clip is animated on twos/threes (train.vsr.held_frames)
        "val_clips": 4,
        "val_frames": 7,
        "val_size": 256,  # GT crop of the validation clips
    },
    "model": {"num_feat": 64, "num_block": [5, 3, 2], "feedback": False, "prime_steps": 0, "single_frame": False},
    "degrade": {OPEN: True},  # keyword arguments of degrade.pipeline.DegradationConfig
    "net": {
        "batch_size": 4,
        "total_iter": 300000,
        "lr": 1e-4,
        "betas": [0.9, 0.99],
        "weight_decay": 0.0,
        **_SCHEDULE,
        "ema": 0.999,
        "init": "",  # fine-tune from a checkpoint (.pt, EMA weights used) or weight file; "" = a fresh model
        "l1_weight": 1.0,
        **_TEMPORAL,
        "perceptual_weight": 0.0,  # the GAN stage's VGG16 perceptual loss, off in the paper's net stage
        "perceptual_layers": dict(_PERCEPTUAL_LAYERS),
        "usm": True,  # L1 against the unsharp-masked GT
        "usm_weight": 0.3,
        "usm_radius": 50,
        "usm_threshold": 10,
    },
    "gan": {
        "batch_size": 4,
        "total_iter": 300000,
        "lr": 5e-5,
        "lr_d": 5e-5,
        "betas": [0.9, 0.99],
        "weight_decay": 0.0,
        **_SCHEDULE,
        "ema": 0.999,
        "init": "",  # net-stage checkpoint (.pt, EMA weights used) or weight file (.safetensors)
        "vqgan": "",  # VQGAN weight file for the VQ degradation; "" = classic degradations only
        "l1_weight": 1.0,
        **_TEMPORAL,
        "perceptual_weight": 1.0,
        "perceptual_layers": dict(_PERCEPTUAL_LAYERS),
        "gan_weight": 1.0,
        "d_scales": 3,
        "d_ndf": 64,
    },
}

VQGAN_SCHEMA: dict[str, Any] = {
    "run": dict(_RUN),
    "data": {
        "train": [],  # image/frame folders (or roots of them)
        "val": "",
        "crop": 256,
        "val_images": 8,
    },
    "model": {
        "width": 128,
        "embed_dim": 256,
        "n_embed": 1024,
        "dropout": 0.0,
        # fast convergence of small models (models.quantize); all off = the paper's quantiser
        "codebook_dim": 0,  # lookup space projected to this many dims (ViT-VQGAN factorised codes); 0 = embed_dim
        "l2_codes": False,  # l2-normalised latents and codes in the lookup space (cosine lookup)
        "ema_decay": 0.0,  # EMA codebook updates with this decay instead of the codebook loss; 0 = loss
        "kmeans_init": False,  # top stage: codebook <- k-means of the first samples' encoder outputs
    },
    "top": {
        "batch_size": 4,
        "total_iter": 200000,
        "base_lr": 4.5e-6,
        "scale_lr": True,  # lr = base_lr x world size x batch (taming)
        "betas": [0.5, 0.9],
        **_SCHEDULE,  # taming: constant
        "ema": 0.0,  # 0 = no EMA copy
        "l1_weight": 1.0,
        "colour_weight": 0.0,  # L1 of 8x8 block means (losses.lowpass_l1): area colour fidelity; 0 = the paper
        "perceptual_weight": 1.0,
        "codebook_weight": 1.0,
        "restart_dead_codes": 0,  # every N steps, codes unused for N steps move to encoder outputs; 0 = never
        "disc_start": -1,  # step from which the adversarial loss is on; -1 = never
        "disc_weight": 0.8,
        "d_ndf": 64,
        "d_layers": 3,
    },
    "multi": {
        "batch_size": 3,
        "total_iter": 200000,
        "base_lr": 2e-6,
        "scale_lr": True,
        "betas": [0.5, 0.9],
        **_SCHEDULE,  # taming: constant
        "ema": 0.0,
        "init": "",  # top-stage checkpoint (.pt) or weight file
        "top_lr_weight": 0.25,
        "l1_weight": 1.0,
        "colour_weight": 0.0,  # L1 of 8x8 block means (losses.lowpass_l1): area colour fidelity; 0 = the paper
        # the same L1 on a k-th-nearest draw's decoding (k_mid, k_bottom drawn per step by the paper's laws,
        # degrade.vq.sample_vq), decoder only: draws add detail-scale artefacts, not colour shifts; 0 = the paper
        "draw_colour_weight": 0.0,
        "perceptual_weight": 1.0,
        "codebook_weight": 1.0,
        "restart_dead_codes": 0,
        "disc_start": 10000,
        "disc_weight": 0.8,
        "d_ndf": 64,
        "d_layers": 3,
    },
}

SCHEMAS = {"vsr": VSR_SCHEMA, "vqgan": VQGAN_SCHEMA}
STAGES = {"vsr": ("net", "gan"), "vqgan": ("top", "multi")}
EMPTY_LIST_ITEM = {"train": "", "milestones": 0}  # element type of lists whose default is empty


class ConfigError(ValueError):
    """A config file or override is malformed, unknown or of the wrong type."""


class Section(dict):
    """A config table with attribute access (``cfg.run.seed``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError as e:
            raise AttributeError(name) from e


def defaults(kind: str) -> dict[str, dict[str, Any]]:
    """The full default config of ``kind`` ("vsr" or "vqgan")."""
    if kind not in SCHEMAS:
        raise ConfigError(f"config: unknown kind {kind!r}; known: {sorted(SCHEMAS)}")
    return {sec: {} if OPEN in keys else copy.deepcopy(keys) for sec, keys in SCHEMAS[kind].items()}


def _check_value(where: str, value: Any, proto: Any, item: Any = None) -> Any:
    if isinstance(proto, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"config: {where} must be true/false, got {value!r}")
        return value
    if isinstance(proto, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"config: {where} must be a number, got {value!r}")
        return float(value)
    if isinstance(proto, int):
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise ConfigError(f"config: {where} must be an integer, got {value!r}")
        return int(value)
    if isinstance(proto, str):
        if not isinstance(value, str):
            raise ConfigError(f"config: {where} must be a string, got {value!r}")
        return value
    if isinstance(proto, list):
        item = proto[0] if proto else item
        if isinstance(value, str) and isinstance(item, str):
            value = [value]  # a single path where a list of paths is expected
        if not isinstance(value, list):
            raise ConfigError(f"config: {where} must be a list, got {value!r}")
        return [_check_value(f"{where}[{i}]", v, item) for i, v in enumerate(value)]
    raise AssertionError(f"unhandled schema type at {where}")


def _merge(kind: str, cfg: dict, table: dict, source: str) -> None:
    schema = SCHEMAS[kind]
    for sec, values in table.items():
        if sec not in schema:
            raise ConfigError(f"config: unknown table [{sec}] in {source}; known: {sorted(schema)}")
        if not isinstance(values, dict):
            raise ConfigError(f"config: [{sec}] in {source} must be a table, got {values!r}")
        keys = schema[sec]
        if OPEN in keys:
            cfg[sec].update(copy.deepcopy(values))
            continue
        for key, value in values.items():
            if key not in keys:
                raise ConfigError(f"config: unknown key {sec}.{key} in {source}; [{sec}] takes {sorted(keys)}")
            proto = keys[key]
            if isinstance(proto, dict):  # open sub-table
                if not isinstance(value, dict):
                    raise ConfigError(f"config: {sec}.{key} in {source} must be a table, got {value!r}")
                checked = {str(k): _check_value(f"{sec}.{key}.{k}", v, 0.0) for k, v in value.items()}
                cfg[sec][key] = {**cfg[sec][key], **checked}
            else:
                cfg[sec][key] = _check_value(f"{sec}.{key} ({source})", value, proto, EMPTY_LIST_ITEM.get(key))


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"net.lr=2e-4"`` -> (["net", "lr"], 2e-4); the value is read as TOML, else taken as a bare string."""
    if "=" not in text:
        raise ConfigError(f"config: --set expects section.key=value, got {text!r}")
    key, raw = text.split("=", 1)
    path = [p.strip() for p in key.strip().split(".")]
    if len(path) not in (2, 3) or not all(path):
        raise ConfigError(f"config: --set key must be section.key (or section.table.key), got {key!r}")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return path, value


def load_config(path: str | Path | None, kind: str, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Section]:
    """Defaults <- TOML file <- ``--set`` overrides, each checked against the schema of ``kind``."""
    cfg = defaults(kind)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config: file {str(path)!r} does not exist")
        try:
            table = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"config: {str(path)!r} is not valid TOML: {e}") from e
        declared = table.pop("kind", kind)
        if declared != kind:
            raise ConfigError(f"config: {str(path)!r} is a {declared!r} config; this command trains {kind!r}")
        _merge(kind, cfg, table, repr(str(path)))
    for text in overrides:
        keys, value = parse_override(text)
        nested: dict = value
        for k in reversed(keys[1:]):
            nested = {k: nested}
        _merge(kind, cfg, {keys[0]: nested}, f"--set {text}")
    return {sec: Section(values) for sec, values in cfg.items()}


def check_paths(cfg: dict[str, Section], kind: str, stage: str) -> None:
    """Every data folder and input file named by the config exists (checked before any work starts)."""
    train = cfg["data"].train
    if not train:
        raise ConfigError("config: data.train is empty; name at least one training folder")
    for p in train:
        if not Path(p).exists():
            raise ConfigError(f"config: data.train folder {p!r} does not exist")
    if cfg["data"].val and not Path(cfg["data"].val).exists():
        raise ConfigError(f"config: data.val folder {cfg['data'].val!r} does not exist")
    for key in ("still_prob", "hold_prob"):
        value = cfg["data"].get(key, 0.0)
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"config: data.{key} must be a probability in [0, 1], got {value!r}")
    sec = cfg[stage]
    for key in ("init", "vqgan"):
        value = sec.get(key, "")
        if value and not Path(value).is_file():
            raise ConfigError(f"config: {stage}.{key} file {value!r} does not exist")
    if kind == "vqgan" and stage == "multi" and not sec.init:
        raise ConfigError(
            "config: the multi stage starts from a trained model: set multi.init to the top stage's "
            "checkpoint (or a multi-scale model to go on training)"
        )


def to_json(cfg: dict[str, Section]) -> str:
    return json.dumps(cfg, indent=2, sort_keys=True)
