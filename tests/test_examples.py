"""examples/: the scripts' --arg handling (vsvqdsr.scriptargs: paths from the caller's folder, matrix names,
one-line errors)."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest
from conftest import cartoon_frames
from test_plugin_support import ROOT, VENV_BIN, make_h264, parse_y4m, tiny_vsr_weights, vs, vspipe_env

from vsvqdsr.scriptargs import ScriptArgs, caller_dir

pytestmark = pytest.mark.skipif(not hasattr(vs.core, "bs"), reason="vapoursynth-bestsource is not installed")
EXAMPLES = ROOT / "examples"
FRAMES = 12  # 64x48 in, 256x192 out


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    """A tagged H.264 in.mkv and a tiny VSR model.safetensors (the README's file names), in a folder of their own."""
    tmp = tmp_path_factory.mktemp("examples_in")
    video = make_h264(tmp / "in.mkv", cartoon_frames(FRAMES, 48, 64, seed=5, motion=2))
    return video, tiny_vsr_weights(tmp / "model.safetensors")


# ---------------------------------------------------------------------------------------------------------------------
# the scripts' arguments through vspipe


def vspipe_in(here: Path, *args: str) -> subprocess.CompletedProcess:
    """vspipe run by bash in ``here`` (no check on the exit status)."""
    script = shlex.join([str(VENV_BIN / "vspipe"), *args])
    return subprocess.run(["bash", "-c", script], cwd=here, env=vspipe_env(), capture_output=True, timeout=300)


@pytest.mark.parametrize(
    ("script", "arg", "message"),
    [
        ("upscale.vpy", "warmup=abc", "upscale.vpy: warmup must be an integer, got 'abc'"),
        ("upscale.vpy", "format=NOPE", "upscale.vpy: format must be a VapourSynth format name"),
        ("upscale.vpy", "tile=480", "upscale.vpy: tile must be WIDTHxHEIGHT such as 480x270, got '480'"),
        ("upscale.vpy", "wieghts=model.safetensors", "upscale.vpy: unknown --arg wieghts; this script takes "),
        ("degrade.vpy", "k_mid=1-x", "degrade.vpy: k_mid must be a number or a range such as 1-10, got '1-x'"),
        ("degrade.vpy", "threads=0", "degrade.vpy: threads must be an integer >= 1, got '0'"),
        ("upscale.vpy", "src=missing.mkv", "upscale.vpy: src: no such file "),
    ],
)
def test_bad_arg_is_one_line_naming_the_script(inputs, tmp_path, script, arg, message):
    src = [] if arg.startswith("src=") else ["--arg", f"src={inputs[0]}"]
    res = vspipe_in(tmp_path, "-i", str(EXAMPLES / script), "-", *src, "--arg", arg)
    err = res.stderr.decode(errors="replace")
    assert res.returncode != 0
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("Information:")]
    assert lines[0].startswith(message), err
    assert "Traceback" not in err, err


def test_matrix_709_and_601_are_accepted(inputs, tmp_path):
    """Names that are all digits stay names (they used to become the ints 709 and 601, which no code is)."""
    for m in ("709", "601"):
        args = ["-i", str(EXAMPLES / "upscale.vpy"), "-", "--arg", f"src={inputs[0]}", "--arg", f"matrix={m}"]
        res = vspipe_in(tmp_path, *args)
        assert res.returncode == 0, res.stderr.decode(errors="replace")[-2000:]


def test_degrade_vpy_takes_matrix_for_an_untagged_file(tmp_path):
    """ffmpeg's lavfi sources write no colour matrix: degrade.vpy refuses them unless given --arg matrix=."""
    ffmpeg = ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=24", "-frames:v", "4"]
    video = tmp_path / "untagged.mkv"
    subprocess.run([*ffmpeg, "-c:v", "libx264", "-pix_fmt", "yuv420p", str(video)], check=True)
    common = ["-c", "y4m", "-e", "1", str(EXAMPLES / "degrade.vpy"), "-", "--arg", f"src={video}"]
    refused = vspipe_in(tmp_path, *common)
    assert refused.returncode != 0 and b"pass matrix=" in refused.stderr
    res = vspipe_in(tmp_path, *common, "--arg", "matrix=709")
    assert res.returncode == 0, res.stderr.decode(errors="replace")[-2000:]
    head, frames = parse_y4m(res.stdout)
    assert (head["W"], head["H"], len(frames)) == ("64", "48", 2)


# ---------------------------------------------------------------------------------------------------------------------
# vsvqdsr.scriptargs in process


def test_caller_dir_from_pwd_or_the_typed_script_path(tmp_path, monkeypatch):
    """vspipe's cwd is the script's folder; the caller's folder comes from $PWD when it checks out, else from the
    typed path; a stale $PWD (a parent that is not a shell) is not believed for a relative script path."""
    user, scripts = tmp_path / "user", tmp_path / "repo" / "examples"
    user.mkdir()
    scripts.mkdir(parents=True)
    monkeypatch.chdir(scripts)
    monkeypatch.setenv("PWD", str(user))
    assert caller_dir("../repo/examples/upscale.vpy") == user  # $PWD + typed folder = cwd
    assert caller_dir("examples/upscale.vpy") == tmp_path / "repo"  # $PWD stale: cwd less the typed folder
    assert caller_dir(str(scripts / "upscale.vpy")) == user  # absolute: only $PWD knows
    monkeypatch.delenv("PWD")
    assert caller_dir("examples/upscale.vpy") == tmp_path / "repo"
    assert caller_dir(str(scripts / "upscale.vpy")) == scripts  # nothing to go on: vspipe's folder
    monkeypatch.chdir(user)  # a host that does not move to the script's folder
    assert caller_dir(str(scripts / "upscale.vpy")) == user
    (tmp_path / "link").symlink_to(tmp_path / "repo")  # the typed path through a symlink: cwd is the real folder
    monkeypatch.chdir(scripts)
    monkeypatch.setenv("PWD", str(tmp_path / "link"))
    assert caller_dir("examples/upscale.vpy") == tmp_path / "link"


def test_script_args_reads_and_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PWD", raising=False)
    scope = {"__file__": str(tmp_path / "s.vpy"), "warmup": "3", "matrix": "709", "code": b"5", "w": "model.st"}
    scope |= {"vs": vs, "tile": "480X270", "trt": "yes", "format": "yuv420p10", "bad": "abc", "_private": "x"}
    args = ScriptArgs(scope)
    assert (args.integer("warmup"), args.matrix(), args.matrix("code")) == (3, "709", 5)
    assert (args.size("tile"), args.flag("trt"), args.text("absent")) == ((480, 270), True, None)
    assert (args.path("w"), args.video_format()) == (str(tmp_path / "model.st"), vs.YUV420P10)
    with pytest.raises(SystemExit):
        args.done()  # "bad" was never read
    known = ", ".join(sorted(["absent", "code", "format", "matrix", "tile", "trt", "w", "warmup"]))
    assert capsys.readouterr().err == f"s.vpy: unknown --arg bad; this script takes {known}\n"
    with pytest.raises(SystemExit):
        args.number("bad")
    assert capsys.readouterr().err == "s.vpy: bad must be a number, got 'abc'\n"
