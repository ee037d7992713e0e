"""The ``vqdsr`` command: one subcommand per job, each defined in its own module.

A command module exposes ``register(subparsers)``, which adds its parser(s) and sets ``func`` to a handler
taking the parsed ``argparse.Namespace`` and returning an exit code. Handlers import heavy dependencies lazily,
so ``vqdsr --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import re
import sys
import time
from typing import Any


def command_modules() -> list[str]:
    """Every module of ``vqdsr_core.commands`` (each has ``register(subparsers)``), in name order."""
    from . import commands

    return sorted(f"{commands.__name__}.{m.name}" for m in pkgutil.iter_modules(commands.__path__))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vqdsr",
        description="VQD-SR animation video super-resolution: data, degradations, training and export.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in command_modules():
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("PIL").setLevel(logging.INFO)  # -v is for our debug messages, not PNG chunk dumps
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(args.func(args) or 0)
    except ModuleNotFoundError as e:  # an optional dependency (PyAV, ...) of this command
        if args.verbose or not e.name or e.name.split(".")[0] in ("vqdsr_core", "vsvqdsr"):
            raise
        hint = f"pip install {e.name.split('.')[0]}, or the extra that has it: pip install 'vsvqdsr[train]'"
        print(f"vqdsr {args.command}: error: needs the Python package {e.name!r} ({hint})", file=sys.stderr)
        return 2
    except (ValueError, OSError, RuntimeError) as e:  # user-facing errors: message, no traceback
        if args.verbose:
            raise
        print(f"vqdsr {args.command}: error: {user_message(e, args.command)}", file=sys.stderr)
        return 2


def user_message(e: BaseException, command: str) -> str:
    """``e``'s message without a repeated command prefix or an ``[Errno N]`` code (PyAV, OSError)."""
    msg = re.sub(r"\[Errno -?\d+\] ", "", str(e))
    for prefix in (f"vqdsr {command}: ", f"{command}: ", "vqdsr: "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    return msg


class Progress:
    """A progress bar on stderr (tqdm: count, total, rate, ETA); without tqdm a log line every ``every`` s."""

    def __init__(
        self, total: int | None, desc: str, *, unit: str = "frame", enabled: bool = True, every: float = 10.0
    ) -> None:
        self.total, self.desc, self.unit, self.n, self.every = total or None, desc, unit, 0, every
        self.bar: Any = None
        self.t0 = self.last = time.perf_counter()
        self.enabled = enabled
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:  # tqdm comes with the train extra
                return
            self.bar = tqdm(total=self.total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.enabled and (now := time.perf_counter()) - self.last >= self.every:
            self.last = now
            rate = self.n / max(now - self.t0, 1e-9)
            left = f", ETA {(self.total - self.n) / rate:.0f} s" if self.total and rate > 0 else ""
            of = f"/{self.total}" if self.total else ""
            logging.getLogger("vqdsr").info("%s: %d%s %ss, %.2f s/%s%s", self.desc, self.n, of, self.unit,
                                            1 / rate, self.unit, left)  # fmt: skip

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    sys.exit(main())
