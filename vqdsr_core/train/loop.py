"""The generic training loop: DDP, mixed precision, EMA, step-indexed data, checkpoints, resume, logging.

A *task* (``train.vsr.VSRTask``, ``train.vqgan.VQGANTask``) owns the networks, optimisers and losses and does one
step; :class:`Trainer` owns everything around it. Data are indexed by global sample number: the sample that rank r
sees at step s, slot i, is ``(s * world + r) * batch + i``, and each sample is made from ``(seed, index)`` alone.
A resumed run therefore sees exactly the samples an uninterrupted one would, whatever the worker count.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import signal
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler

from ..device import pick_device, pick_dtype
from . import checkpoint as ck

log = logging.getLogger("vqdsr.train")


# --------------------------------------------------------------------------------------------- environment
@dataclass
class Env:
    """Where this process trains: rank, world size, device, autocast precision."""

    rank: int
    world: int
    local_rank: int
    device: torch.device
    amp_dtype: torch.dtype | None  # None = fp32, no autocast
    scaler: Any = None  # torch.amp.GradScaler for fp16

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self) -> AbstractContextManager:
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def step(self, loss: Tensor, optimizer: torch.optim.Optimizer) -> None:
        """zero_grad, backward (loss-scaled under fp16), optimiser step."""
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()

    def wrap(self, module: nn.Module) -> nn.Module:
        """DistributedDataParallel around ``module`` when running under torchrun; the module itself otherwise."""
        if not self.distributed or not any(p.requires_grad for p in module.parameters()):
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)


def setup_env(device: str, precision: str) -> Env:
    """Read torchrun's RANK/WORLD_SIZE/LOCAL_RANK, join the process group (NCCL on GPUs, gloo on CPUs)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, func="train")
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank if world > 1 else (dev.index or 0))
        torch.cuda.set_device(dev)
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend, rank=rank, world_size=world)
    amp = None if precision == "fp32" else pick_dtype(precision, dev, func="train")
    if amp == torch.float32:
        amp = None
    scaler = torch.amp.GradScaler(dev.type) if amp == torch.float16 else None
    return Env(rank, world, local_rank, dev, amp, scaler)


# --------------------------------------------------------------------------------------------- pieces
def lr_scheduler(optimizer: torch.optim.Optimizer, st: Any) -> torch.optim.lr_scheduler.LRScheduler:
    """The stage's per-iteration schedule: ``step`` (x gamma at each milestone) or ``cosine`` (to lr_min)."""
    from torch.optim.lr_scheduler import CosineAnnealingLR, MultiStepLR

    if st.lr_schedule == "step":
        return MultiStepLR(optimizer, milestones=list(st.milestones), gamma=st.gamma)
    if st.lr_schedule == "cosine":
        return CosineAnnealingLR(optimizer, T_max=max(st.total_iter, 1), eta_min=st.lr_min)
    raise ValueError(f"config: lr_schedule must be 'step' or 'cosine', got {st.lr_schedule!r}")


class EMA:
    """Exponential moving average of a module's parameters (buffers copied): ema = d * ema + (1 - d) * p."""

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(module).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        for e, p in zip(self.module.parameters(), module.parameters(), strict=True):
            e.lerp_(p.detach(), 1.0 - self.decay)
        for e, b in zip(self.module.buffers(), module.buffers(), strict=True):
            e.copy_(b)


class StepSampler(Sampler[int]):
    """Endless global sample indices of one rank from ``start_step`` on (see the module docstring)."""

    def __init__(self, start_step: int, batch: int, rank: int, world: int) -> None:
        self.start, self.batch, self.rank, self.world = start_step, batch, rank, world

    def __iter__(self) -> Iterator[int]:
        step = self.start
        while True:
            base = (step * self.world + self.rank) * self.batch
            yield from range(base, base + self.batch)
            step += 1


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the main process handles it


class Task(Protocol):
    """What a training stage provides to :class:`Trainer`."""

    batch_size: int
    total_iter: int
    nets: dict[str, nn.Module]  # unwrapped networks to checkpoint
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, Any]
    emas: dict[str, EMA]
    export_info: dict[str, Any]  # {"net": name, "arch": ..., "config": {...}}

    def dataset(self) -> Dataset: ...

    collate: Any  # module-level function (picklable) making a batch from samples

    def describe(self) -> str: ...
    def train_step(self, batch: Any, step: int) -> dict[str, float]: ...
    def validate(self) -> tuple[dict[str, float], float] | None: ...
    def sample_image(self, batch: Any) -> Tensor | None: ...


# --------------------------------------------------------------------------------------------- trainer
class Trainer:
    """Runs a task to ``task.total_iter`` steps, checkpointing, validating and logging on the way."""

    def __init__(self, task: Task, env: Env, run_cfg: dict, run_dir: Path, cfg_json: str, meta: dict) -> None:
        self.task, self.env, self.rc, self.run_dir = task, env, run_cfg, Path(run_dir)
        self.cfg_json, self.meta = cfg_json, meta
        self.step = 0
        self.best: float | None = None
        self._stop_signal: int | None = None
        self.writer = None

    # ---- state
    def payload(self) -> dict[str, Any]:
        t = self.task
        rng = ck.rng_state()
        rngs, prints = [rng], None
        if self.env.distributed:
            rngs = [None] * self.env.world
            torch.distributed.all_gather_object(rngs, rng)
            prints = [None] * self.env.world
            torch.distributed.all_gather_object(prints, self.fingerprint())
            if len(set(prints)) > 1:
                log.error("step %d: DDP ranks hold different weights: %s", self.step, prints)
        return {
            **self.meta,
            "step": self.step,
            "world_size": self.env.world,
            "config": json.loads(self.cfg_json),
            "models": {k: v.state_dict() for k, v in t.nets.items()},
            "ema": {k: e.module.state_dict() for k, e in t.emas.items()},
            "optimizers": {k: o.state_dict() for k, o in t.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in t.schedulers.items()},
            "rng": rngs,
            "sampler": {"next_step": self.step, "seed": int(self.rc["seed"])},
            "best": self.best,
            "scaler": self.env.scaler.state_dict() if self.env.scaler is not None else None,
            "export": t.export_info,
            "rank_fingerprints": prints,  # per-rank hash of every network's parameters (DDP keeps them equal)
        }

    def fingerprint(self) -> str:
        """SHA-256 over the names, shapes and bytes of every trained network's parameters.

        Buffers are left out: BatchNorm running statistics see each rank's own batch (DDP re-broadcasts rank 0's
        at every forward), so they legitimately differ between ranks in between.
        """
        from ..weights import tensors_sha256

        nets = self.task.nets.items()
        return tensors_sha256({f"{k}.{n}": p.detach() for k, net in nets for n, p in net.named_parameters()})

    def load(self, ckpt: dict[str, Any]) -> None:
        t = self.task
        for k, net in t.nets.items():
            net.load_state_dict(ckpt["models"][k])
        for k, e in t.emas.items():
            e.module.load_state_dict(ckpt["ema"][k])
        for k, o in t.optimizers.items():
            o.load_state_dict(ckpt["optimizers"][k])
        for k, s in t.schedulers.items():
            if k in ckpt["schedulers"]:
                s.load_state_dict(ckpt["schedulers"][k])
            else:  # a VQGAN checkpoint from before its stages had a schedule: it ran at a constant LR
                s.last_epoch = int(ckpt["step"])
        self.step, self.best = int(ckpt["step"]), ckpt.get("best")
        if self.env.scaler is not None and ckpt.get("scaler"):
            self.env.scaler.load_state_dict(ckpt["scaler"])
        rngs = ckpt["rng"]
        if ckpt["world_size"] != self.env.world:
            log.warning(
                "resuming a %d-process run with %d processes: the sample stream differs from an uninterrupted run",
                ckpt["world_size"],
                self.env.world,
            )
        ck.set_rng_state(rngs[self.env.rank % len(rngs)])

    def save(self, best: bool = False) -> None:
        payload = self.payload()  # collective under DDP: every rank takes part
        if self.env.is_main:
            path = ck.save_checkpoint(self.run_dir, payload, best=best)
            log.info("step %d: checkpoint %s", self.step, path)

    # ---- logging
    def _metrics_file(self, truncate_after: int | None) -> None:
        path = self.run_dir / "metrics.jsonl"
        if truncate_after is not None and path.exists():  # drop lines written after the checkpoint we resume from
            keep = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= truncate_after]
            ck.atomic_write_bytes(path, ("\n".join(keep) + "\n" if keep else "").encode())
        self._metrics = path.open("a", encoding="utf-8")

    def _record(self, kind: str, values: dict[str, float]) -> None:
        self._metrics.write(json.dumps({"step": self.step, "kind": kind, **values}) + "\n")
        self._metrics.flush()
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(f"{kind}/{k}", v, self.step)

    # ---- signals
    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self._stop_signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self._stop_signal = signum
        log.warning("got %s: saving a checkpoint after this step", signal.Signals(signum).name)

    def _should_stop(self) -> bool:
        flag = torch.tensor([1.0 if self._stop_signal is not None else 0.0], device=self._flag_device)
        if self.env.distributed:
            torch.distributed.all_reduce(flag)
        return bool(flag.item() > 0)

    # ---- main loop
    def run(self, resume: bool) -> int:
        env, t, rc = self.env, self.task, self.rc
        self._flag_device = env.device if env.device.type == "cuda" else torch.device("cpu")
        ckpt = ck.find_resume(self.run_dir) if resume else None
        if resume and ckpt is None:
            log.info("--resume: no checkpoint in %s yet; starting from step 0", self.run_dir)
        if not resume and (self.run_dir / ck.LATEST).exists():
            raise ValueError(
                f"train: {str(self.run_dir)!r} already holds a run; pass --resume to continue it or --out for a new one"
            )
        if ckpt is not None:
            if (ckpt.get("kind"), ckpt.get("stage")) != (self.meta["kind"], self.meta["stage"]):
                raise ValueError(f"train: {ckpt['_path']!r} is a {ckpt.get('kind')}/{ckpt.get('stage')} checkpoint")
            self.load(ckpt)
            log.info("resumed from %s at step %d", ckpt["_path"], self.step)
        if env.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            ck.atomic_write_bytes(self.run_dir / "config.json", self.cfg_json.encode())
            self._metrics_file(self.step if ckpt is not None else 0)
            if rc["tensorboard"]:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=self.step or None)
        if env.is_main:
            log.info("%s", t.describe())
        if self.step >= t.total_iter:
            log.info("already at step %d of %d: nothing to do", self.step, t.total_iter)
            return 0

        workers = int(rc["num_workers"])
        if rc["worker_start"] not in ("spawn", "forkserver", "fork"):
            raise ValueError(f"config: run.worker_start must be spawn, forkserver or fork, got {rc['worker_start']!r}")
        loader = DataLoader(
            t.dataset(),
            batch_size=t.batch_size,
            sampler=StepSampler(self.step, t.batch_size, env.rank, env.world),
            num_workers=workers,
            collate_fn=t.collate,
            worker_init_fn=_worker_init if workers else None,
            persistent_workers=False,
            prefetch_factor=2 if workers else None,
            multiprocessing_context=rc["worker_start"] if workers else None,
            pin_memory=env.device.type == "cuda",
        )
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        bar = None
        if env.is_main and rc["progress"]:
            from tqdm import tqdm

            bar = tqdm(total=t.total_iter, initial=self.step, file=sys.stderr, dynamic_ncols=True, unit="it")
        stopped = False
        t0, c0, n0 = time.perf_counter(), time.process_time(), self.step
        try:
            it = iter(loader)
            while self.step < t.total_iter:
                batch = next(it)
                if env.is_main and rc["sample_every"] and self.writer and self.step % rc["sample_every"] == 0:
                    img = t.sample_image(batch)
                    if img is not None:
                        self.writer.add_image("samples/lr_sr_gt", img.clamp(0, 1), self.step)
                logs = t.train_step(batch, self.step)
                for name, e in t.emas.items():
                    e.update(t.nets[name])
                with warnings.catch_warnings():  # a discriminator's schedule runs before disc_start too
                    warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step", UserWarning)
                    for s in t.schedulers.values():
                        s.step()
                self.step += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items() if k.startswith("l_")}, refresh=False)
                if env.is_main and (self.step % rc["log_every"] == 0 or self.step == t.total_iter):
                    lrs = {
                        f"lr_{k}" + (f"{i}" if len(o.param_groups) > 1 else ""): g["lr"]
                        for k, o in t.optimizers.items()
                        for i, g in enumerate(o.param_groups)
                    }
                    spi = (time.perf_counter() - t0) / max(self.step - n0, 1)
                    cpi = (time.process_time() - c0) / max(self.step - n0, 1)  # CPU time of this process's threads
                    self._record("train", {**logs, **lrs, "s_per_iter": spi, "cpu_s_per_iter": cpi})
                    if bar is None:
                        eta = spi * (t.total_iter - self.step)
                        shown = " ".join(f"{k} {v:.4g}" for k, v in logs.items())
                        log.info("step %d/%d %s (%.3f s/it, ETA %.0f s)", self.step, t.total_iter, shown, spi, eta)
                if self._should_stop():
                    stopped = True
                    break
                if rc["ckpt_every"] and self.step % rc["ckpt_every"] == 0:
                    self.save()
                if rc["val_every"] and self.step % rc["val_every"] == 0:
                    self._validate()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            if bar is not None:
                bar.close()
        if not (rc["ckpt_every"] and self.step % rc["ckpt_every"] == 0) or stopped:
            self.save()
        if stopped:
            log.warning("stopped by signal at step %d; continue with --resume", self.step)
        else:
            if rc["val_every"] and self.step % rc["val_every"]:
                self._validate()
            if env.is_main:
                from .export import export_checkpoint

                out = export_checkpoint(self.run_dir / ck.LATEST, self.run_dir / "final.safetensors")
                log.info("finished %d steps; weights %s", self.step, out)
        if self.writer is not None:
            self.writer.close()
        if env.is_main:
            self._metrics.close()
        # like a process killed by the signal (128 + signum), so `stage1 && stage2` scripts stop here
        return 128 + (self._stop_signal or signal.SIGTERM) if stopped else 0

    def _validate(self) -> None:
        result = self.task.validate() if self.env.is_main else None
        score = None
        if result is not None:
            metrics, score = result
            self._record("val", metrics)
            log.info("step %d: validation %s", self.step, {k: round(v, 4) for k, v in metrics.items()})
        if self.env.distributed:  # every rank must agree on writing best.pt (the save is collective)
            box = [score]
            torch.distributed.broadcast_object_list(box, src=0)
            score = box[0]
        if score is not None and (self.best is None or score > self.best):
            self.best = score
            self.save(best=True)
