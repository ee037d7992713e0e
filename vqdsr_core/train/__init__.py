"""Training of the VQD-SR networks: the VQGAN degradation model (two stages) and the VSR net (two stages).

Entry points: ``vqdsr train-vqgan``, ``vqdsr train-vsr`` and ``vqdsr export`` (``commands/train.py``), or
:func:`run_training` from Python. See docs/training.md.
"""

from __future__ import annotations

from pathlib import Path

from .config import ConfigError, check_paths, load_config, to_json


def run_training(
    kind: str,
    config: str | Path | None,
    stage: str,
    *,
    overrides: list[str] | tuple[str, ...] = (),
    out: str | Path | None = None,
    resume: bool = False,
) -> int:
    """Train stage ``stage`` of ``kind`` ("vsr": net|gan, "vqgan": top|multi) into ``out``; returns an exit code."""
    import torch

    from .config import STAGES
    from .loop import Trainer, setup_env

    if stage not in STAGES.get(kind, ()):
        raise ConfigError(f"train: {kind} stages are {STAGES.get(kind)}, got {stage!r}")
    cfg = load_config(config, kind, overrides)
    check_paths(cfg, kind, stage)
    run = cfg["run"]
    if run.threads:
        torch.set_num_threads(run.threads)
    if out is None:
        stem = Path(config).stem if config else kind
        out = Path("runs") / f"{stem}_{stage}"
    env = setup_env(run.device, run.precision)
    try:
        if kind == "vsr":
            from .vsr import VSRTask

            task = VSRTask(cfg, stage, env)
        else:
            from .vqgan import VQGANTask

            task = VQGANTask(cfg, stage, env)
        trainer = Trainer(task, env, run, Path(out), to_json(cfg), {"kind": kind, "stage": stage})
        result = trainer.run(resume)
        if env.distributed and torch.distributed.is_initialized():
            # every rank reaches the end (rank 0 writes the final files) before the process group goes away;
            # tearing gloo down while a peer still talks aborted a rank ("terminate called ...")
            torch.distributed.barrier()
        return result
    finally:
        if env.distributed and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


__all__ = ["ConfigError", "check_paths", "load_config", "run_training"]
