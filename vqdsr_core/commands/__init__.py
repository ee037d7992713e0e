"""Subcommands of ``vqdsr``: every module here exposes ``register(subparsers)`` (found by ``vqdsr_core.cli``)."""
