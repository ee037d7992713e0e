"""VQGAN training (fact sheet §B.6): stage "top" (single scale) and stage "multi" (adds the mid/bottom branches).

Generator loss = mean(|x - x̂|) + w_p·LPIPS(x, x̂) + λ·(-mean D(x̂)) + w_vq·L_vq, with λ the adaptive weight
‖∇nll‖/(‖∇g‖+1e-4) at conv_out × disc_weight, switched on from ``disc_start``; D (BatchNorm PatchGAN) takes the
hinge loss. LR = base_lr × world size × batch (taming); in the multi stage the shared trunk, codebook and shared
decoder (the ``top`` modules) train at ``top_lr_weight`` × LR. Adam (0.5, 0.9), constant LR as in taming unless
``lr_schedule = "cosine"`` (or step milestones) is set.

``restart_dead_codes = N`` (off in the paper preset): every N steps, codes no branch picked during those N steps
are moved onto encoder outputs of the current batch. Short CPU runs otherwise keep a few dozen live codes out of
1,024, and the k-th nearest code (the VQ degradation) then lands on the untrained ones.

``[model]`` options for fast convergence of small models (all off in the paper preset; ``training/cpu/
vqgan_fast.toml`` turns them on): ``kmeans_init`` (top stage, fresh run: before step 1 the codebook becomes the
k-means of the encoder outputs of the first training samples, SoundStream), ``ema_decay`` (EMA codebook updates
instead of the codebook loss), ``codebook_dim`` and ``l2_codes`` (a low-dimensional, l2-normalised lookup space,
ViT-VQGAN). The last three are constructor arguments of the model, so weight files record them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from ..models import build_model
from ..models.quantize import VectorQuantizer, assignment_sums
from .checkpoint import model_weights, read_checkpoint
from .loop import EMA, Env, lr_scheduler
from .vsr import EpochShuffle

log = logging.getLogger("vqdsr.train")

KMEANS_PER_CODE = 4  # latents per code that the k-means initialisation draws samples for
KMEANS_MAX_IMAGES = 1024  # at most this many samples (tiny crops would need more)


class VQGANImages(Dataset):
    """Global sample index -> an augmented crop from ``data.clips.FrameFolderDataset`` (epoch-shuffled)."""

    def __init__(self, frames: Dataset, seed: int) -> None:
        self.frames, self.order = frames, EpochShuffle(len(frames), seed)

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, index: int) -> Tensor:
        epoch, item = self.order(index)
        self.frames.set_epoch(epoch)
        return self.frames[item]["image"]  # (3, crop, crop) in [0, 1]


def stack_images(items: list[Tensor]) -> Tensor:
    return torch.stack(items)


def _trained(params: Iterable[torch.nn.Parameter]) -> list[torch.nn.Parameter]:
    """The parameters the optimiser updates (an EMA codebook is updated by ``CodebookUpkeep`` instead)."""
    return [p for p in params if p.requires_grad]


class CodebookUpkeep:
    """Per-step codebook work outside the loss: EMA updates (``model.ema_decay``) and dead-code restarts.

    A forward hook on the (shared) quantizer sees every branch's lookup-space latents and indices in training mode.
    After the optimiser step, the EMA statistics of all branches (summed over ranks under DDP) move the codes once;
    then, every ``restart_every`` steps (0 = never), codes no branch picked during the window are moved onto this
    step's latents. Those are drawn with a generator seeded by (seed, step) on rank 0 and broadcast, so ranks stay
    identical; their Adam moments (loss-trained codebook) or EMA statistics are reset.
    """

    def __init__(self, quantizer: VectorQuantizer, restart_every: int) -> None:
        self.q, self.every = quantizer, restart_every
        dev = quantizer.codebook.device
        self.usage = torch.zeros(quantizer.n_embed, dtype=torch.long, device=dev)
        self.latents: list[Tensor] = []
        self.ema_stats: tuple[Tensor, Tensor] | None = None
        quantizer.register_forward_hook(self._seen)

    def _seen(self, module: torch.nn.Module, inputs: tuple[Tensor, ...], output: tuple[Tensor, ...]) -> None:
        if not (module.training and torch.is_grad_enabled()):
            return
        z = inputs[0].detach()
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]).float()  # (B*h*w, D)
        idx = output[2].reshape(-1)
        if self.every:
            self.latents.append(flat)
            self.usage += torch.bincount(idx, minlength=self.usage.numel())
        if self.q.ema_decay:
            counts, sums = assignment_sums(flat, idx, self.q.n_embed)
            if self.ema_stats is not None:
                counts, sums = counts + self.ema_stats[0], sums + self.ema_stats[1]
            self.ema_stats = counts, sums

    @torch.no_grad()
    def after_step(self, step: int, opt: torch.optim.Optimizer, env: Env, seed: int) -> dict[str, float]:
        """EMA update, then restarts when ``step + 1`` ends a window; logs (``codes_restarted`` with restarts on)."""
        logs: dict[str, float] = {}
        if self.ema_stats is not None:
            counts, sums = self.ema_stats
            self.ema_stats = None
            if env.distributed:
                torch.distributed.all_reduce(counts)
                torch.distributed.all_reduce(sums)
            self.q.ema_update_(counts, sums)
        if self.every:
            logs["codes_restarted"] = self._restart(step, opt, env, seed)
        return logs

    def _restart(self, step: int, opt: torch.optim.Optimizer, env: Env, seed: int) -> int:
        pool, self.latents = self.latents, []
        if (step + 1) % self.every:
            return 0
        usage, self.usage = self.usage, torch.zeros_like(self.usage)
        if env.distributed:
            torch.distributed.all_reduce(usage)
        dead = (usage == 0).nonzero().squeeze(1)
        if dead.numel() == 0 or not pool:
            return 0
        z = torch.cat(pool).cpu()
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
        pick = torch.randint(z.shape[0], (dead.numel(),), generator=gen)
        jitter = 1e-3 * z.std() * torch.randn(dead.numel(), z.shape[1], generator=gen)  # no two codes identical
        self.q.set_codes_(dead, z[pick] + jitter)
        if env.distributed:
            broadcast_codebook(self.q)
        weight = self.q.codebook
        for moment in ("exp_avg", "exp_avg_sq"):
            if moment in opt.state.get(weight, {}):
                opt.state[weight][moment][dead] = 0
        log.info("step %d: restarted %d codes unused for %d steps", step + 1, dead.numel(), self.every)
        return int(dead.numel())


def broadcast_codebook(q: VectorQuantizer) -> None:
    """Rank 0's codebook (and EMA statistics) to every rank."""
    torch.distributed.broadcast(q.codebook.data, src=0)
    if q.ema_decay:
        torch.distributed.broadcast(q.ema_count, src=0)
        torch.distributed.broadcast(q.ema_sum, src=0)


class VQGANTask:
    """One VQGAN stage ("top" or "multi") for :class:`train.loop.Trainer`."""

    def __init__(self, cfg: dict, stage: str, env: Env) -> None:
        from torch.optim import Adam

        from ..losses import hinge_d_loss  # noqa: F401  (fail early if the losses module is missing)
        from ..metrics import LPIPS
        from ..models.discriminators import NLayerDiscriminator

        self.cfg, self.stage, self.env, self.st = cfg, stage, env, cfg[stage]
        st, dev, m = self.st, env.device, cfg["model"]
        self.batch_size, self.total_iter = st.batch_size, st.total_iter
        model_cfg = {
            "width": m.width,
            "embed_dim": m.embed_dim,
            "n_embed": m.n_embed,
            "multiscale": stage == "multi",
            "dropout": m.dropout,
            "codebook_dim": m.codebook_dim,
            "l2_codes": m.l2_codes,
            "ema_decay": m.ema_decay,
        }
        torch.manual_seed(cfg["run"].seed)
        self.g = build_model("multiscale_vqgan", model_cfg).to(dev)
        if stage == "multi":
            self._init_multi(st.init)
        self.export_info = {"net": "g", "arch": "multiscale_vqgan", "config": model_cfg}
        self.g_train = env.wrap(self.g)
        self.d = NLayerDiscriminator(in_ch=3, ndf=st.d_ndf, n_layers=st.d_layers).to(dev)
        self.d_train = env.wrap(self.d)
        self.nets = {"g": self.g, "d": self.d}
        self.lr = st.base_lr * (env.world * st.batch_size if st.scale_lr else 1)
        betas = tuple(st.betas)
        if stage == "multi":
            groups = [
                {"params": _trained(self.g.shared_parameters()), "lr": self.lr * st.top_lr_weight},
                {"params": _trained(self.g.branch_parameters()), "lr": self.lr},
            ]
        else:
            groups = [{"params": _trained(self.g.parameters()), "lr": self.lr}]
        self.optimizers = {"g": Adam(groups, betas=betas), "d": Adam(self.d.parameters(), self.lr, betas=betas)}
        self.schedulers = {k: lr_scheduler(o, st) for k, o in self.optimizers.items()}
        self.emas = {"g": EMA(self.g, st.ema)} if st.ema > 0 else {}
        self.lpips = LPIPS(dev) if st.perceptual_weight else None
        self.collate = stack_images  # a module-level function: DataLoader workers receive it pickled
        # after the EMA copy above: its deepcopy must not carry the hook
        upkeep = st.restart_dead_codes or m.ema_decay
        self.upkeep = CodebookUpkeep(self.g.quantize, st.restart_dead_codes) if upkeep else None
        self.kmeans = m.kmeans_init and stage == "top"  # the multi stage's codebook comes from the top stage

    def _init_multi(self, path: str) -> None:
        """multi.init: a top-stage model (stage 2 proper) or a multi-scale one (go on training or fine-tune a
        finished degrader, e.g. the bundled one on your own ``prepare-ral`` corpus); checkpoint or weight file."""
        if path.endswith(".pt"):
            ckpt = read_checkpoint(path)
            state = model_weights(ckpt, ema=True, name="g")
            multiscale = bool(ckpt.get("export", {}).get("config", {}).get("multiscale", False))
        else:
            from ..weights import read_weights

            state, info = read_weights(path)
            if info.arch != "multiscale_vqgan":
                raise ValueError(f"multi.init: {path!r} is a {info.arch!r} weight file, not a multiscale_vqgan")
            multiscale = bool(info.config.get("multiscale", True))
        if not multiscale:
            self.g.init_from_top(state)
            log.info("multi stage initialised from the top stage %s", path)
            return
        try:
            self.g.load_state_dict({k: v.float() for k, v in state.items()})
        except RuntimeError as e:
            raise ValueError(f"multi.init: the multi-scale model {path!r} does not fit the configured one: {e}") from e
        log.info("multi stage continues from the multi-scale model %s", path)

    @torch.no_grad()
    def kmeans_init(self) -> int:
        """Codebook <- k-means of the lookup-space latents of the first training samples; returns how many latents.

        Enough samples for ``KMEANS_PER_CODE`` latents per code (all branches), drawn as training draws them (the
        same on every rank); rank 0's result is broadcast.
        """
        q, ds, net = self.g.quantize, self.dataset(), self.g
        want, pool, i = KMEANS_PER_CODE * q.n_embed, [], 0
        while sum(len(z) for z in pool) < want and i < KMEANS_MAX_IMAGES:
            x01 = torch.stack([ds[j] for j in range(i, i + self.batch_size)]).to(self.env.device)
            i += self.batch_size
            with self.env.autocast():
                z = net.encode(x01 * 2 - 1)
            pool += [v.permute(0, 2, 3, 1).reshape(-1, v.shape[1]).float() for v in z.values()]
        gen = torch.Generator().manual_seed(self.cfg["run"].seed)
        z = torch.cat(pool)
        counts = q.init_codes_(z.cpu(), generator=gen)
        if self.env.distributed:
            broadcast_codebook(q)
        log.info(
            "codebook initialised by k-means of %d latents of %d samples: %d of %d clusters non-empty",
            len(z), i, int((counts > 0).sum()), q.n_embed,
        )  # fmt: skip
        return len(z)

    # ---- data
    def dataset(self) -> Dataset:
        from ..data.clips import FrameFolderDataset

        d, seed = self.cfg["data"], self.cfg["run"].seed
        return VQGANImages(FrameFolderDataset(d.train, crop=d.crop, seed=seed), seed)

    def describe(self) -> str:
        w, b, st = self.env.world, self.batch_size, self.st
        top = f"; shared trunk/codebook/decoder at x{st.top_lr_weight:g}" if self.stage == "multi" else ""
        scaled = f"base_lr {st.base_lr:g} x {w} processes x batch {b} = {self.lr:g}" if st.scale_lr else f"{self.lr:g}"
        disc = f"adversarial loss from step {st.disc_start}" if st.disc_start >= 0 else "no adversarial loss"
        q = self.g.quantize
        codes = ", ".join(
            name
            for name, on in (
                (f"{q.dim}-d lookup", q.factorized), ("l2 codes", q.l2_codes), (f"EMA {q.ema_decay:g}", q.ema_decay),
                ("k-means init", self.kmeans), (f"restarts every {st.restart_dead_codes}", st.restart_dead_codes),
            )
            if on
        )  # fmt: skip
        return (
            f"VQGAN {self.stage} stage on {self.env.device} x{w}: batch {b}/process -> global batch {w * b}; "
            f"lr {scaled}{top}; {disc}; codebook {q.n_embed} x {q.dim}{'; ' + codes if codes else ''}; "
            f"{self.total_iter} iterations; precision {self.env.amp_dtype or 'fp32'}"
        )

    # ---- step
    def train_step(self, batch: Tensor, step: int) -> dict[str, float]:
        from ..losses import hinge_d_loss, hinge_g_loss, lowpass_l1, vq_adaptive_weight

        st, env = self.st, self.env
        if self.kmeans and step == 0:  # a fresh top-stage run (a resumed one starts later)
            self.kmeans_init()
        x01 = batch.to(env.device, non_blocking=True)
        x = x01 * 2 - 1
        gan_on = 0 <= st.disc_start <= step
        self.d.requires_grad_(False)
        draw = self._draw(step) if self.stage == "multi" and st.draw_colour_weight else None
        with env.autocast():
            xrec, l_vq, info = self.g_train(x, draw=draw)
            xrec = xrec.float()
            rec = st.l1_weight * (x - xrec).abs().mean()
            nll = rec
            logs = {"l_rec": rec.item(), "l_vq": l_vq.item()}
            if st.colour_weight:
                l_c = st.colour_weight * lowpass_l1(xrec, x)
                nll = nll + l_c
                logs["l_colour"] = l_c.item()
            if draw is not None:
                l_dc = st.draw_colour_weight * lowpass_l1(info["draw"].float(), x)
                nll = nll + l_dc
                logs["l_draw_colour"] = l_dc.item()
            if self.lpips is not None:
                l_p = st.perceptual_weight * self.lpips(x01, (xrec.clamp(-1, 1) + 1) / 2).mean()
                nll = nll + l_p
                logs["l_percep"] = l_p.item()
            loss = nll + st.codebook_weight * l_vq
            if gan_on:
                l_g = hinge_g_loss(self.d(xrec))  # D itself (no DDP hooks) with frozen parameters
                lam = vq_adaptive_weight(nll, l_g, self.g.last_layer, st.disc_weight)
                loss = loss + lam * l_g
                logs.update(l_g=l_g.item(), d_weight=lam.item())
        env.step(loss, self.optimizers["g"])
        if self.upkeep is not None:
            logs.update(self.upkeep.after_step(step, self.optimizers["g"], env, self.cfg["run"].seed))
        for name in self.g.branches:
            logs[f"perplexity_{name}"] = float(info["perplexity"][name])
            logs[f"usage_{name}"] = float(info["usage"][name])
        self.d.requires_grad_(True)
        if gan_on:
            with env.autocast():
                l_d = hinge_d_loss(self.d_train(x.detach()), self.d_train(xrec.detach()))
            env.step(l_d, self.optimizers["d"])
            logs["l_d"] = l_d.item()
        return logs

    def _draw(self, step: int) -> dict[str, int]:
        """This step's k's for the draw-colour term: the degradation's laws (top k = 1), seeded by (seed, step), so
        every rank and a resumed run draw the same."""
        from ..degrade.vq import sample_vq

        k = sample_vq(np.random.default_rng((self.cfg["run"].seed, step)))
        n = self.g.n_embed  # a codebook smaller than the laws' k (tiny test models): its farthest code
        return {"mid": min(k["k_mid"], n), "bot": min(k["k_bottom"], n)}

    # ---- validation and samples
    def _eval_net(self) -> torch.nn.Module:
        return self.emas["g"].module if "g" in self.emas else self.g

    @torch.no_grad()
    def _reconstruct(self, x01: Tensor) -> Tensor:
        net = self._eval_net()
        was = net.training
        net.eval()
        xrec, _, _ = net(x01 * 2 - 1)
        net.train(was)
        return ((xrec.float().clamp(-1, 1) + 1) / 2).clamp(0, 1)

    def sample_image(self, batch: Tensor) -> Tensor | None:
        x01 = batch[:1].to(self.env.device)
        parts = [x01[0], self._reconstruct(x01)[0]]
        if self.stage == "multi":  # a VQ degradation as used for the VSR GAN stage
            net = self._eval_net()
            k = net.n_embed
            parts.append(net.degrade(x01, k_top=1, k_mid=min(5, k), k_bottom=min(25, k))[0])
        return torch.cat(parts, dim=-1).cpu()  # GT | reconstruction [| degraded]

    def validate(self) -> tuple[dict[str, float], float] | None:
        d = self.cfg["data"]
        if not d.val:
            return None
        from ..data.clips import FrameFolderDataset
        from ..metrics import psnr_rgb, psnr_y

        if not hasattr(self, "_val"):
            ds = FrameFolderDataset(d.val, crop=d.crop, seed=self.cfg["run"].seed, scale_prob=0.0, flips=False,
                                    channel_shuffle_prob=0.0, rgb_shift_prob=0.0)  # fmt: skip
            picks = np.linspace(0, len(ds) - 1, min(d.val_images, len(ds))).round().astype(int)
            self._val = torch.stack([ds[int(i)]["image"] for i in picks])
        x01 = self._val.to(self.env.device)
        rec = torch.cat([self._reconstruct(part) for part in x01.split(4)])
        metrics = {"l1": float(F.l1_loss(rec, x01)), "psnr_y": psnr_y(rec, x01), "psnr_rgb": psnr_rgb(rec, x01)}
        if self.lpips is not None:
            metrics["lpips"] = float(self.lpips(rec, x01).mean())
        return metrics, -metrics.get("lpips", metrics["l1"])
