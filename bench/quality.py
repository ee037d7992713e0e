"""Quality benchmark: ``python -m bench.quality --clips DIR --weights default=PATH ...`` (same as ``vqdsr eval``).

Writes OUT/QUALITY.md (tables per track, bar check, machine, command, commit), OUT/results.json and OUT/crops/;
copy the folder's QUALITY.md and crops next to this file to publish the figures.
"""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None, prog: str = "python -m bench.quality") -> int:
    from vqdsr_core.evaluation.options import add_arguments
    from vqdsr_core.evaluation.run import run_from_args

    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return run_from_args(args)
    except (ValueError, FileNotFoundError, RuntimeError) as e:  # user-facing errors: message, no traceback
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
