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
import sys


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
    except (ValueError, FileNotFoundError, RuntimeError) as e:  # user-facing errors: message, no traceback
        if args.verbose:
            raise
        print(f"vqdsr {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
