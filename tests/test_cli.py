"""The ``vqdsr`` command line: light registration, help texts, user-facing error messages, progress."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from vqdsr_core.cli import Progress, build_parser, main, user_message


def test_registration_imports_no_heavy_module():
    """``vqdsr --help`` builds every subcommand's parser: none may import torch, numpy, PyAV or VapourSynth."""
    code = (
        "import sys\n"
        "from vqdsr_core.cli import build_parser\n"
        "build_parser()\n"
        "print(sorted(m for m in ('torch', 'numpy', 'av', 'vapoursynth', 'PIL', 'tqdm') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _help(*argv: str) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--help"])


def test_help_texts(capsys):
    _help("render-clips")
    text = capsys.readouterr().out
    assert "(10% of SVG" in " ".join(text.split()) and "%%" not in text
    _help("train-vqgan")
    text = capsys.readouterr().out
    assert "training/cpu/vqgan.toml" in text and "vsr.toml" not in text and "net.lr" not in text
    _help("train-vsr")
    assert "training/cpu/vsr.toml" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("message", "want"),
    [
        ("vqdsr upscale: device must be 'auto'", "device must be 'auto'"),
        ("upscale: x", "x"),
        ("vqdsr: bad", "bad"),
        ("cannot read 'a.mp4': [Errno 1094995529] Invalid data found", "cannot read 'a.mp4': Invalid data found"),
        ("[Errno 2] No such file or directory: 'x'", "No such file or directory: 'x'"),
    ],
)
def test_user_message_drops_repeated_prefixes_and_errno(message, want):
    assert user_message(ValueError(message), "upscale") == want


def test_missing_optional_package_is_a_one_line_error(monkeypatch, capsys):
    def needs_av(args):
        import av_not_installed  # noqa: F401

    monkeypatch.setattr("vqdsr_core.commands.infer._upscale", needs_av)  # registered by main's build_parser
    assert main(["upscale", "a.mp4", "b.mkv"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("vqdsr upscale: error: needs the Python package 'av_not_installed'") and "Traceback" not in err
    )


def test_progress_without_tqdm_logs_count_rate_and_eta(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm -> ImportError
    with caplog.at_level(logging.INFO, logger="vqdsr"), Progress(4, "vqdsr degrade", every=0) as bar:
        assert bar.bar is None
        bar.update()
        bar.update()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and lines[1].startswith("vqdsr degrade: 2/4 frames, ") and "ETA" in lines[1]


def test_progress_bar_on_stderr(capsys):
    with Progress(3, "job") as bar:
        for _ in range(3):
            bar.update()
    captured = capsys.readouterr()
    assert captured.out == "" and "3/3" in captured.err
    with Progress(3, "job", enabled=False) as bar:
        bar.update()
    assert capsys.readouterr().err == ""
