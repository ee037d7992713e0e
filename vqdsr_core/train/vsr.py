"""VSR training (fact sheet §D): the net stage (L1 vs USM-sharpened GT) and the GAN stage (L1 + perceptual + LSGAN).

Both stages train RecurrentVSRNet on clips unrolled with full BPTT, Adam (0.9, 0.99), EMA 0.999. The GAN stage
starts from the net stage's EMA weights and, given ``gan.vqgan``, synthesises LR clips with the VQ degradation.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from ..models import build_model
from .checkpoint import model_weights, read_checkpoint
from .loop import EMA, Env, lr_scheduler

log = logging.getLogger("vqdsr.train")


def sample_seed(seed: int, index: int, salt: int = 0) -> int:
    """A 62-bit seed derived from (seed, global sample index, salt)."""
    return int(np.random.default_rng([seed, index, salt]).integers(2**62))


class EpochShuffle:
    """Global sample index -> (epoch, item) of a dataset of ``n`` items, shuffled per epoch from the seed."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self._epoch, self._perm = n, seed, -1, np.arange(0)

    def __call__(self, index: int) -> tuple[int, int]:
        epoch, pos = divmod(index, self.n)
        if epoch != self._epoch:
            self._epoch, self._perm = epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n)
        return epoch, int(self._perm[pos])


def still_stretch(hr: Tensor, seed: int, prob: float) -> Tensor:
    """With probability ``prob``, the clip's motion stops: frames from a random start on repeat that frame
    (start 0: a still shot). Degradations are drawn per frame afterwards, so the LR still changes (noise, codec) and
    a temporal loss sees pure flicker there, as on the still stretches of real animation."""
    rng = np.random.default_rng([seed, 7])
    if prob <= 0 or hr.shape[0] < 2 or rng.random() >= prob:
        return hr
    start = int(rng.integers(0, hr.shape[0] - 1))
    return torch.cat([hr[:start], hr[start : start + 1].expand(hr.shape[0] - start, -1, -1, -1)]).contiguous()


HOLD_LENGTHS = (2, 3)  # animation "on twos" and "on threes"


def held_frames(hr: Tensor, seed: int, prob: float) -> Tensor:
    """With probability ``prob``, the clip is animated on twos or threes: every frame is held for 2 or 3 frames
    (random phase), the limited animation of most anime, where the whole frame repeats while the next drawing's
    neighbours differ. Degradations are drawn per frame afterwards, so the held pairs differ only by noise and codec:
    a temporal loss asks for identical outputs there although the model's input windows do not match."""
    rng = np.random.default_rng([seed, 11])
    if prob <= 0 or hr.shape[0] < 2 or rng.random() >= prob:
        return hr
    n = int(rng.choice(HOLD_LENGTHS))
    phase = int(rng.integers(0, n))
    idx = [max(0, i - (i + phase) % n) for i in range(hr.shape[0])]
    return hr[idx].contiguous()


def crop_pair(lr: Tensor, hr: Tensor, size: int, seed: int) -> tuple[Tensor, Tensor]:
    """One random ``size`` HR crop (a multiple of the scale) of a degraded pair, the same spot in every frame:
    (N, 3, h, w) LR and (N, 3, s*h, s*w) HR -> (LR crop, HR crop).

    The degradations ran on the larger crop first, so the codec and blur saw a real frame's context (macroblocks
    beyond the crop, motion into it) rather than a clip as small as the net's training crop."""
    scale = hr.shape[-1] // lr.shape[-1]
    h, w = lr.shape[-2:]
    if size % scale or size // scale > min(h, w):
        raise ValueError(f"crop_pair: a {size} HR crop needs a multiple of {scale} within the {w}x{h} LR, got {size}")
    c = size // scale
    rng = np.random.default_rng([seed, 13])
    top, left = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
    lr = lr[..., top : top + c, left : left + c]
    hr = hr[..., top * scale : (top + c) * scale, left * scale : (left + c) * scale]
    return lr.contiguous(), hr.contiguous()


def lpips_frame_index(n: int, k: int) -> Tensor | slice:
    """The frames of an ``n``-frame output clip that the LPIPS loss scores: ``k`` of them, drawn without replacement
    from torch's global RNG (checkpointed, so a resumed run draws the same) and sorted; all when ``k`` is 0 or >= n.

    LPIPS's VGG16 pass costs about nine times the rest of a CPU step; a random subset is an unbiased estimate of the
    all-frame loss at a fraction of that."""
    if k < 0:
        raise ValueError(f"lpips_frame_index: k must be >= 0 (0 = every frame), got {k}")
    if k == 0 or k >= n:
        return slice(None)
    return torch.randperm(n)[:k].sort().values


def load_vqgan(path: str | Path, device: torch.device | str = "cpu") -> torch.nn.Module:
    """The VQGAN of a weight file (``vqdsr export`` / ``final.safetensors``) or of a training checkpoint."""
    from ..weights import load_model

    if str(path).endswith(".pt"):
        ckpt = read_checkpoint(path)
        exp = ckpt["export"]
        model = build_model(exp["arch"], exp["config"])
        model.load_state_dict(model_weights(ckpt, name=exp["net"]))
        return model.to(device).eval()
    return load_model(path, arch="multiscale_vqgan", device=device)[0]


class VSRPairs(Dataset):
    """Global sample index -> {"lr", "hr"[, "gt_usm"]} or, with ``vq_in_main``, {"hr", "seed"} left to the trainer.

    The HR clip comes from ``data.clips.ClipDataset`` (epoch-shuffled); the LR clip from
    ``degrade.pipeline.make_pair`` seeded by the sample index, so any worker makes the same pair.
    """

    def __init__(
        self,
        clips: Dataset,
        seed: int,
        deg_cfg: Any,
        vqgan: str,
        vq_in_main: bool,
        usm: dict | None,
        still_prob: float = 0.0,
        hold_prob: float = 0.0,
        net_crop: int = 0,
    ):
        self.clips, self.seed, self.deg_cfg, self.vqgan_path = clips, seed, deg_cfg, vqgan
        self.vq_in_main, self.usm, self.still_prob, self.hold_prob = vq_in_main, usm, still_prob, hold_prob
        self.net_crop = net_crop  # > 0: the clips are degraded whole, then cropped to this (crop_pair)
        self.order = EpochShuffle(len(clips), seed)
        self._vqgan: torch.nn.Module | None = None

    def __len__(self) -> int:
        return 2**62  # endless: indexed by global sample number

    def __getitem__(self, index: int) -> dict[str, Any]:
        from ..degrade.pipeline import make_pair

        epoch, item = self.order(index)
        self.clips.set_epoch(epoch)
        seed = sample_seed(self.seed, index)
        hr = held_frames(self.clips[item]["hr"], seed, self.hold_prob)  # (N, 3, H, W)
        hr = still_stretch(hr, seed, self.still_prob)
        out: dict[str, Any] = {"hr": hr}
        if self.vq_in_main:
            out["seed"] = seed
        else:
            if self.vqgan_path and self._vqgan is None:
                self._vqgan = load_vqgan(self.vqgan_path)
            lr, hr, _ = make_pair(hr, seed, self.deg_cfg, vqgan=self._vqgan)
            if self.net_crop:
                lr, hr = crop_pair(lr, hr, self.net_crop, seed)
            out.update(lr=lr, hr=hr)
        if self.usm is not None:
            from ..losses import usm_sharpen

            out["gt_usm"] = usm_sharpen(out["hr"], **self.usm)
        return out


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in items[0]:
        vals = [it[k] for it in items]
        out[k] = torch.stack(vals) if isinstance(vals[0], Tensor) else vals
    return out


def degradation_config(cfg: dict, stage: str) -> Any:
    """The [degrade] table as a DegradationConfig; the VQ step is on exactly when the GAN stage names a VQGAN."""
    from ..degrade.pipeline import DegradationConfig

    table = dict(cfg["degrade"])
    vqgan = cfg[stage].get("vqgan", "") if stage == "gan" else ""
    if table.get("vq", bool(vqgan)) != bool(vqgan):
        raise ValueError(
            "config: degrade.vq is set for you (on exactly when the GAN stage names gan.vqgan); "
            f"here degrade.vq = {str(table['vq']).lower()} but {stage}.vqgan = {vqgan!r}"
        )
    table["vq"] = bool(vqgan)
    try:
        return DegradationConfig.from_dict(table)
    except (TypeError, ValueError) as e:
        raise ValueError(f"config: bad [degrade] table: {e}") from e


class VSRTask:
    """One VSR stage ("net" or "gan") for :class:`train.loop.Trainer`."""

    def __init__(self, cfg: dict, stage: str, env: Env) -> None:
        from torch.optim import Adam

        self.cfg, self.stage, self.env = cfg, stage, env
        st, dev = cfg[stage], env.device
        self.st = st
        self.batch_size, self.total_iter = st.batch_size, st.total_iter
        self.deg_cfg = degradation_config(cfg, stage)
        m = cfg["model"]
        arch = "animesr_vsr" if m.feedback else "vqdsr_vsr"
        model_cfg = {"num_feat": m.num_feat, "num_block": list(m.num_block), "prime_steps": m.prime_steps,
                     "single_frame": m.single_frame}  # fmt: skip
        torch.manual_seed(cfg["run"].seed)
        self.g = build_model(arch, model_cfg).to(dev)
        if st.init:
            self._init_from(st.init, arch)
        self.export_info = {"net": "g", "arch": arch, "config": model_cfg}
        self.g_train = env.wrap(self.g)
        self.nets: dict[str, torch.nn.Module] = {"g": self.g}
        self.optimizers = {"g": Adam(self.g.parameters(), st.lr, betas=tuple(st.betas), weight_decay=st.weight_decay)}
        self.emas = {"g": EMA(self.g, st.ema)} if st.ema > 0 else {}
        vq = cfg["run"].vq_device
        if vq not in ("auto", "worker", "main"):
            raise ValueError(f"config: run.vq_device must be auto, worker or main, got {vq!r}")
        self.vqgan_path = st.vqgan if stage == "gan" else ""
        workers = cfg["run"].num_workers
        self.vq_in_main = bool(self.vqgan_path) and (
            vq == "main" or (vq == "auto" and (dev.type == "cuda" or not workers))
        )
        self.vqgan = load_vqgan(self.vqgan_path, dev) if self.vq_in_main else None
        self.percep = None
        if st.perceptual_weight:
            from ..losses import PerceptualLoss

            layers = {k: v for k, v in st.perceptual_layers.items() if v}
            self.percep = PerceptualLoss(layer_weights=layers).to(dev)
        if st.temporal_hold_weight < 0:
            raise ValueError(f"config: {stage}.temporal_hold_weight must be >= 0, got {st.temporal_hold_weight}")
        self.lpips = None
        if st.lpips_weight:
            from ..metrics import LPIPS

            if st.lpips_frames < 0:
                raise ValueError(f"config: {stage}.lpips_frames must be >= 0 (0 = every frame), got {st.lpips_frames}")

            self.lpips = LPIPS(dev)
        if stage == "gan":
            from ..models.discriminators import MultiScalePatchDiscriminator

            self.d = MultiScalePatchDiscriminator(num_scales=st.d_scales, ndf=st.d_ndf).to(dev)
            self.d_train = env.wrap(self.d)
            self.nets["d"] = self.d
            self.optimizers["d"] = Adam(
                self.d.parameters(), st.lr_d, betas=tuple(st.betas), weight_decay=st.weight_decay
            )
        self.schedulers = {k: lr_scheduler(o, st) for k, o in self.optimizers.items()}
        self._val: list[tuple[Tensor, Tensor]] | None = None
        self.collate = collate  # a module-level function: DataLoader workers receive it pickled

    def _init_from(self, path: str, arch: str) -> None:
        if path.endswith(".pt"):
            ckpt = read_checkpoint(path)
            state = model_weights(ckpt, ema=True, name="g")
        else:
            from ..weights import read_weights

            state, info = read_weights(path)
            if info.arch != arch:
                raise ValueError(
                    f"{self.stage}.init: {path!r} holds a {info.arch!r} model, this config trains {arch!r}"
                )
        try:
            self.g.load_state_dict(state)
        except RuntimeError as e:
            raise ValueError(f"{self.stage}.init: {path!r} does not fit the configured model: {e}") from e
        log.info("%s stage initialised from %s (EMA weights when present)", self.stage, path)

    # ---- data
    def dataset(self) -> Dataset:
        from ..data.clips import ClipDataset

        d, seed = self.cfg["data"], self.cfg["run"].seed
        if d.degrade_size:
            scale = self.deg_cfg.scale
            if d.degrade_size < d.gt_size or d.degrade_size % scale:
                raise ValueError(
                    f"config: data.degrade_size must be 0 or a multiple of {scale} >= data.gt_size ({d.gt_size}), "
                    f"got {d.degrade_size!r}"
                )
            if self.vq_in_main:
                raise ValueError("config: data.degrade_size needs the degradation in the data workers (run.vq_device)")
        crop = d.degrade_size or d.gt_size
        clips = ClipDataset(d.train, num_frame=d.num_frame, crop=crop, intervals=tuple(d.intervals), seed=seed)
        usm = None
        if self.stage == "net" and self.st.usm:
            usm = {"weight": self.st.usm_weight, "radius": self.st.usm_radius, "threshold": self.st.usm_threshold}
        net_crop = d.gt_size if d.degrade_size else 0
        return VSRPairs(
            clips, seed, self.deg_cfg, self.vqgan_path, self.vq_in_main, usm, d.still_prob, d.hold_prob, net_crop
        )

    def _lr(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
        dev = self.env.device
        if "lr" in batch:
            return batch["lr"].to(dev, non_blocking=True), batch["hr"].to(dev, non_blocking=True)
        from ..degrade.pipeline import make_pair

        lrs, hrs = [], []
        for hr, seed in zip(batch["hr"], batch["seed"]):
            lr, hr, _ = make_pair(hr, seed, self.deg_cfg, vqgan=self.vqgan)
            lrs.append(lr)
            hrs.append(hr)
        return torch.stack(lrs).to(dev), torch.stack(hrs).to(dev)

    def describe(self) -> str:
        w, b, st = self.env.world, self.batch_size, self.st
        lrs = f"lr {st.lr:g}" + (f", lr_d {st.lr_d:g}" if self.stage == "gan" else "")
        vq = ""
        if self.vqgan_path:
            vq = f"; VQ degradation ({self.vqgan_path}) in the {'main process' if self.vq_in_main else 'data workers'}"
        return (
            f"VSR {self.stage} stage on {self.env.device} x{w} ({'DDP' if w > 1 else 'single process'}): "
            f"batch {b}/process -> global batch {w * b}; {lrs} as configured (not scaled with the batch; the "
            f"paper's settings are for global batch 16); {self.total_iter} iterations; "
            f"precision {self.env.amp_dtype or 'fp32'}{vq}"
        )

    # ---- step
    def _generator_losses(self, lr: Tensor, target: Tensor) -> tuple[Tensor, Tensor, dict[str, float]]:
        """Run G on the clip (on its ping-pong clip when that loss is on) -> (loss, forward SR, logs).

        Reconstruction (L1, perceptual, LPIPS) and temporal-difference losses cover every output frame, so on the
        ping-pong clip they see each frame twice, from both directions (TecoGAN).
        """
        from ..losses import pingpong_clip, pingpong_loss, temporal_difference_loss

        st, logs = self.st, {}
        n = lr.shape[1]
        if st.pingpong_weight:
            lr, target = pingpong_clip(lr), pingpong_clip(target)
        sr = self.g_train(lr)  # (B, N or 2N-1, 3, 4h, 4w)
        loss = st.l1_weight * F.l1_loss(sr.float(), target)
        logs["l_pix"] = loss.item()
        if st.temporal_weight:
            l_t = st.temporal_weight * temporal_difference_loss(sr, target, hold_weight=st.temporal_hold_weight)
            loss = loss + l_t
            logs["l_temporal"] = l_t.item()
        if st.pingpong_weight:
            l_pp = st.pingpong_weight * pingpong_loss(sr)
            loss = loss + l_pp
            logs["l_pingpong"] = l_pp.item()
        if self.percep is not None:
            l_p = st.perceptual_weight * self.percep(sr.flatten(0, 1).float(), target.flatten(0, 1))
            loss = loss + l_p
            logs["l_percep"] = l_p.item()
        if self.lpips is not None:
            idx = lpips_frame_index(sr.shape[1], st.lpips_frames)
            l_lp = st.lpips_weight * self.lpips(sr[:, idx].flatten(0, 1).float(), target[:, idx].flatten(0, 1)).mean()
            loss = loss + l_lp
            logs["l_lpips"] = l_lp.item()
        return loss, sr[:, :n], logs

    def train_step(self, batch: dict[str, Any], step: int) -> dict[str, float]:
        lr, hr = self._lr(batch)
        opt_g = self.optimizers["g"]
        if self.stage == "gan":
            self.d.requires_grad_(False)
        with self.env.autocast():
            # the net stage's L1 target is the USM-sharpened GT (when on); every GAN-stage loss uses the GT
            target = batch["gt_usm"].to(self.env.device) if "gt_usm" in batch else hr
            loss, sr, logs = self._generator_losses(lr, target)
            if self.stage == "gan":
                from ..losses import lsgan_loss

                fake = sr.flatten(0, 1)  # (B*N, 3, H, W) frame-wise discriminator
                real = hr.flatten(0, 1)
                l_g = self.st.gan_weight * lsgan_loss(self.d(fake), True)
                loss = loss + l_g
                logs["l_gan"] = l_g.item()
        self.env.step(loss, opt_g)
        if self.stage == "gan":
            from ..losses import lsgan_loss

            self.d.requires_grad_(True)
            n = real.shape[0]
            with self.env.autocast():
                preds = self.d_train(torch.cat([real, fake.detach()]))  # one DDP forward for both halves
                l_real = lsgan_loss([p[:n] for p in preds], True)
                l_fake = lsgan_loss([p[n:] for p in preds], False)
            self.env.step(l_real + l_fake, self.optimizers["d"])
            logs.update(l_d_real=l_real.item(), l_d_fake=l_fake.item())
        return logs

    # ---- validation and samples
    def _eval_net(self) -> torch.nn.Module:
        return self.emas["g"].module if "g" in self.emas else self.g

    def sample_image(self, batch: dict[str, Any]) -> Tensor | None:
        lr, hr = self._lr({k: v[:1] for k, v in batch.items()})
        with torch.no_grad(), self.env.autocast():
            sr = self._eval_net()(lr).float()
        t = lr.shape[1] // 2
        up = F.interpolate(lr[0, t : t + 1], size=hr.shape[-2:], mode="nearest")[0]
        return torch.cat([up, sr[0, t], hr[0, t]], dim=-1).cpu()  # LR | SR | GT

    def _val_set(self) -> list[tuple[Tensor, Tensor]]:
        if self._val is None:
            from ..data.clips import ClipDataset
            from ..degrade.pipeline import make_pair

            d, seed = self.cfg["data"], self.cfg["run"].seed
            ds = ClipDataset(d.val, num_frame=d.val_frames, crop=d.val_size, intervals=(1,), seed=seed)
            picks = np.linspace(0, len(ds) - 1, min(d.val_clips, len(ds))).round().astype(int)
            vq = self.vqgan if self.vqgan is not None else (load_vqgan(self.vqgan_path) if self.vqgan_path else None)
            self._val = []
            for i, idx in enumerate(picks):
                lr, hr, _ = make_pair(ds[int(idx)]["hr"], 10_000 + i, self.deg_cfg, vqgan=vq)
                self._val.append((lr, hr))
        return self._val

    def validate(self) -> tuple[dict[str, float], float] | None:
        if not self.cfg["data"].val:
            return None
        from ..metrics import LPIPS, psnr_y

        if not hasattr(self, "_lpips"):
            self._lpips = LPIPS().to(self.env.device).eval()
        net, psnrs, lps = self._eval_net(), [], []
        with torch.no_grad():
            for lr, hr in self._val_set():
                sr = net(lr[None].to(self.env.device))[0].clamp(0, 1)
                hr = hr.to(sr.device)
                psnrs.append(float(psnr_y(sr, hr)))
                lps.append(float(self._lpips(sr, hr).mean()))
        metrics = {"psnr_y": float(np.mean(psnrs)), "lpips": float(np.mean(lps))}
        score = metrics["psnr_y"] if self.stage == "net" else -metrics["lpips"]
        return metrics, score
