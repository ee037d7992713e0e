"""``--arg`` values of a .vpy script run by vspipe: typed reads, one-line errors, paths from the caller's folder.

    args = ScriptArgs(globals())
    src = args.path("src", required=True, must_exist=True)    # --arg src=PATH, relative to the user's folder
    warmup = args.integer("warmup")                           # None when not given
    args.done()                                               # refuse --arg names that nothing read (typos)
    clip = args.source(src)                                   # opened with the first source plugin installed

vspipe evaluates a script with the working directory set to the script's folder, so a relative path given with
``--arg`` would be looked up there; ``path`` looks it up where the user typed it (``caller_dir``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NoReturn, TypeVar

import vapoursynth as vs

from .frames import MATRICES

T = TypeVar("T")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def caller_dir(script_file: str | None) -> Path:
    """The folder vspipe was started from, given the script's ``__file__`` (its path as the user typed it).

    For a relative ``__file__`` that folder is the one that, joined with the typed folder, is the current one:
    the shell's ``$PWD`` when it checks out, else the current folder less the typed folder's parts. For an
    absolute ``__file__`` nothing can check ``$PWD``; it is taken when the current folder is the script's (vspipe
    moved there). Otherwise (a host that does not move) the current folder.
    """
    here = Path.cwd()
    if not script_file:
        return here
    typed = Path(script_file).expanduser().parent
    env = os.environ.get("PWD", "")
    pwd = Path(env) if os.path.isabs(env) and os.path.isdir(env) else None
    if typed.is_absolute():
        return pwd if pwd is not None and _same(typed, here) else here
    candidates = [pwd] if pwd is not None else []
    if ".." not in typed.parts and len(typed.parts) < len(here.parts):
        candidates.append(Path(*here.parts[: len(here.parts) - len(typed.parts)]))
    return next((c for c in candidates if _same(c / typed, here)), here)


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


class ScriptArgs:
    """The ``--arg`` values in a script's globals, read by name; a bad value ends the script with one line.

    Every reader returns None when the argument was not given (so the filter's default applies).
    """

    def __init__(self, scope: Mapping[str, object]) -> None:
        file = scope.get("__file__")
        file = file if isinstance(file, str) else None
        self.script = Path(file).name if file else "script"
        self.base = caller_dir(file)
        self.values = {
            k: v.decode() if isinstance(v, bytes) else v
            for k, v in scope.items()
            if not k.startswith("_") and isinstance(v, str | bytes)
        }
        self._known: set[str] = set()

    def fail(self, message: str) -> NoReturn:
        """Write ``<script>: <message>`` to stderr and end the script (vspipe then adds "Python exit with code 2")."""
        sys.stderr.write(f"{self.script}: {message}\n")
        sys.stderr.flush()
        raise SystemExit(2)

    def text(self, name: str, *, required: bool = False) -> str | None:
        """The value as given."""
        self._known.add(name)
        value = self.values.get(name)
        if value is None and required:
            self.fail(f"pass {name} with --arg {name}=...")
        return value

    def parse(self, name: str, parse: Callable[[str], T], want: str) -> T | None:
        """``parse(value)``; a ValueError from it becomes "<name> must be <want>, got <value>"."""
        value = self.text(name)
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError:
            self.fail(f"{name} must be {want}, got {value!r}")

    def integer(self, name: str, *, minimum: int | None = None) -> int | None:
        def parse(v: str) -> int:
            n = int(v)
            if minimum is not None and n < minimum:
                raise ValueError(v)
            return n

        return self.parse(name, parse, "an integer" if minimum is None else f"an integer >= {minimum}")

    def number(self, name: str) -> float | None:
        return self.parse(name, float, "a number")

    def flag(self, name: str) -> bool | None:
        """1/true/yes/on or 0/false/no/off."""

        def parse(v: str) -> bool:
            if v.lower() not in (*_TRUE, *_FALSE):
                raise ValueError(v)
            return v.lower() in _TRUE

        return self.parse(name, parse, "1 or 0 (true/false, yes/no, on/off)")

    def size(self, name: str) -> tuple[int, int] | None:
        """``WxH`` -> (W, H)."""

        def parse(v: str) -> tuple[int, int]:
            w, h = v.lower().split("x")
            return int(w), int(h)

        return self.parse(name, parse, "WIDTHxHEIGHT such as 480x270")

    def matrix(self, name: str = "matrix") -> int | str | None:
        """A matrix name ("709", "601", "2020ncl", ...) stays a string; any other number is an H.273 code."""
        value = self.text(name)
        if value is None or value.lower() in MATRICES or not value.isascii() or not value.isdigit():
            return value
        return int(value)

    def video_format(self, name: str = "format") -> vs.PresetVideoFormat | None:
        """A VapourSynth format name, such as YUV420P10."""
        value = self.text(name)
        if value is None:
            return None
        fmt = getattr(vs, value.upper(), None)
        if not isinstance(fmt, vs.PresetVideoFormat) or fmt == vs.NONE:
            self.fail(f"{name} must be a VapourSynth format name such as YUV420P10 or YUV444P16, got {value!r}")
        return fmt

    def path(self, name: str, *, required: bool = False, must_exist: bool = False) -> str | None:
        """The path, relative ones taken from the folder vspipe was started in (``caller_dir``)."""
        value = self.text(name, required=required)
        if value is None:
            return None
        path = Path(value).expanduser()
        path = path if path.is_absolute() else self.base / path
        if must_exist and not path.exists():
            self.fail(f"{name}: no such file {str(path)!r}")
        return str(path)

    def source(self, path: str) -> vs.VideoNode:
        """The video at ``path``, opened with the first of bestsource, L-SMASH Works and ffms2 installed."""
        core = vs.core
        for plugin, function in (("bs", "VideoSource"), ("lsmas", "LWLibavSource"), ("ffms2", "Source")):
            if hasattr(core, plugin):
                try:
                    return getattr(getattr(core, plugin), function)(path)
                except vs.Error as e:
                    self.fail(str(e))
        self.fail("no source plugin found; install vapoursynth-bestsource, L-SMASH Works or ffms2")

    def done(self) -> None:
        """Fail on any --arg that no reader asked for (a misspelt name would otherwise be ignored)."""
        unknown = sorted(set(self.values) - self._known)
        if unknown:
            self.fail(f"unknown --arg {', '.join(unknown)}; this script takes {', '.join(sorted(self._known))}")
