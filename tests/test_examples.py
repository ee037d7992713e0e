"""examples/: the README's encoding recipes as written, from the repo root and from another folder; encode.sh; the
scripts' --arg handling (vsvqdsr.scriptargs: paths from the caller's folder, matrix names, one-line errors)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import numpy as np
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


def user_folder(tmp: Path, inputs: tuple[Path, Path]) -> Path:
    """A folder holding in.mkv and model.safetensors, as a user's would."""
    tmp.mkdir(parents=True, exist_ok=True)
    for f in inputs:
        (tmp / f.name).symlink_to(f)
    return tmp


def shell(script: str, cwd: Path) -> subprocess.CompletedProcess:
    """``script`` in bash (which sets $PWD as an interactive shell does), the venv active, no terminal."""
    assert shutil.which("x265"), "x265 is not installed (tools/bootstrap.sh installs Debian's x265)"
    env = vspipe_env()
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(VENV_BIN.parent)
    cmd = ["bash", "-euo", "pipefail", "-c", script]
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, stdin=subprocess.DEVNULL, timeout=600)
    assert res.returncode == 0, f"{script}\n{res.stderr.decode(errors='replace')[-3000:]}"
    return res


def probe(path: Path) -> dict:
    """Codec, profile, pixel format, size, frame count, frame pts and the frames (rgb24) of a video file."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = list(c.decode(video=0))
        return {
            "codec": s.codec_context.name,
            "profile": s.codec_context.profile,
            "pix_fmt": frames[0].format.name,
            "size": (frames[0].width, frames[0].height),
            "n": len(frames),
            "pts": [f.pts for f in frames],
            "rgb": [f.to_ndarray(format="rgb24") for f in frames],
        }


def psnr8(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


# ---------------------------------------------------------------------------------------------------------------------
# the README's recipes


def readme_recipes() -> str:
    """The README's "Encoding recipes" sh block, continuations joined, the venv activation left to ``shell``."""
    section = (ROOT / "README.md").read_text().split("\n## Encoding recipes\n", 1)[1]
    block = section.split("```sh\n", 1)[1].split("\n```", 1)[0].replace("\\\n", " ")
    lines = [line for line in block.splitlines() if line.strip() and not line.startswith(("#", ". "))]
    text = "\n".join(lines)
    for span in ("-s 0 -e 2399 ", "-s 2400 -e 4799 "):
        assert span in text, f"the README's chunk recipe no longer uses {span!r}; update this test"
    return text.replace("-s 0 -e 2399 ", "-s 0 -e 5 ").replace("-s 2400 -e 4799 ", "-s 6 -e 11 ")


def replace_names(text: str, names: dict[str, str]) -> str:
    """Replace whole file names (not parts of other paths) in a shell text."""
    pattern = "|".join(re.escape(n) for n in names)
    return re.sub(rf"(?<![\w/.-])({pattern})(?![\w.-])", lambda m: names[m.group(1)], text)


OUTPUTS = ("out.hevc", "out.mkv", "chunked.hevc", "chunked.mkv", "part0.hevc", "part1.hevc", "part0.mkv")
OUTPUTS += ("part1.mkv", "parts.txt")


def check_recipe_outputs(folder: Path) -> None:
    x265 = probe(folder / "out.hevc")  # --arg format=YUV420P10 | x265 --output-depth 10
    assert (x265["codec"], x265["profile"], x265["pix_fmt"]) == ("hevc", "Main 10", "yuv420p10le")
    assert (x265["size"], x265["n"]) == ((256, 192), FRAMES)
    assert 20 < float(x265["rgb"][6].mean()) < 250  # a picture
    ff = probe(folder / "out.mkv")
    assert (ff["codec"], ff["size"], ff["n"]) == ("h264", (256, 192), FRAMES)
    hevc, mkv = probe(folder / "chunked.hevc"), probe(folder / "chunked.mkv")
    assert (hevc["codec"], hevc["size"], hevc["n"]) == ("hevc", (256, 192), FRAMES)
    assert (mkv["codec"], mkv["size"], mkv["n"]) == ("h264", (256, 192), FRAMES)
    assert mkv["pts"] == sorted(set(mkv["pts"]))  # joined with timestamps, in order
    # the two joins hold the same frames in the same order (both are the bundled model on the same chunks)
    assert min(psnr8(a, b) for a, b in zip(hevc["rgb"], mkv["rgb"])) > 30


@pytest.mark.slow
def test_readme_recipes_run_as_written_from_the_repo_root(inputs, tmp_path):
    """cwd = the repo root; in.mkv and model.safetensors typed as paths relative to it (vspipe runs the script from
    examples/, so a relative src used to be looked up there)."""
    names = {f.name: os.path.relpath(f, ROOT) for f in inputs}
    names |= {n: str(tmp_path / n) for n in OUTPUTS}  # outputs are the encoders' business, not the script's
    shell(replace_names(readme_recipes(), names), ROOT)
    check_recipe_outputs(tmp_path)


@pytest.mark.slow
def test_readme_recipes_run_as_written_from_another_folder(inputs, tmp_path):
    """cwd = a user's folder with in.mkv and model.safetensors; examples/ typed as a relative path to it."""
    here = user_folder(tmp_path / "user", inputs)
    rel = os.path.relpath(EXAMPLES, here)
    shell(re.sub(r"(?<![\w/.-])examples/", lambda _: rel + "/", readme_recipes()), here)
    check_recipe_outputs(here)


# ---------------------------------------------------------------------------------------------------------------------
# encode.sh


def test_encode_sh_x265_keeps_10_bit_and_takes_paths_from_the_caller(inputs, tmp_path):
    here = user_folder(tmp_path / "user", inputs)
    script = os.path.relpath(EXAMPLES / "encode.sh", here)
    shell(f"{script} x265 in.mkv out.hevc --arg weights=model.safetensors --arg format=YUV420P10", here)
    got = probe(here / "out.hevc")
    assert (got["profile"], got["pix_fmt"], got["size"], got["n"]) == ("Main 10", "yuv420p10le", (256, 192), FRAMES)


def test_encode_sh_ffmpeg_from_another_folder(inputs, tmp_path):
    here = user_folder(tmp_path / "user", inputs)
    shell(f"{EXAMPLES / 'encode.sh'} ffmpeg in.mkv out.mkv --arg weights=model.safetensors", here)
    got = probe(here / "out.mkv")
    assert (got["codec"], got["pix_fmt"], got["size"], got["n"]) == ("h264", "yuv420p", (256, 192), FRAMES)


@pytest.fixture(scope="module")
def linear(inputs, tmp_path_factory) -> dict:
    """One linear render of in.mkv with model.safetensors (vspipe | ffmpeg), to compare joined chunks with."""
    video, weights = inputs
    out = tmp_path_factory.mktemp("linear") / "linear.mkv"
    script = f"vspipe -c y4m {EXAMPLES / 'upscale.vpy'} - --arg src={video} --arg weights={weights}"
    shell(script + f" | ffmpeg -v error -i - -c:v libx264 -crf 16 {out}", out.parent)
    return probe(out)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("out", "chunk", "fmt", "want"), [("c.mkv", 5, "YUV420P8", "yuv420p"), ("c.hevc", 6, "YUV420P10", "Main 10")]
)
def test_encode_sh_chunks_join(inputs, linear, tmp_path, out, chunk, fmt, want):
    """12 frames in pieces of 5 (0-4, 5-9 and a short 10-11) joined into .mkv, or of 6 joined into .hevc."""
    here = user_folder(tmp_path / "user", inputs)
    script = os.path.relpath(EXAMPLES / "encode.sh", here)
    shell(f"{script} chunks in.mkv {out} {chunk} --arg weights=model.safetensors --arg format={fmt}", here)
    got = probe(here / out)
    assert (got["size"], got["n"]) == ((256, 192), FRAMES)
    assert want in (got["pix_fmt"], got["profile"])
    if out.endswith(".mkv"):  # raw HEVC has no timestamps
        assert got["pts"] == sorted(set(got["pts"]))
    # the joined frames are the linear render's (the pieces warm up on the frames before them)
    assert min(psnr8(a, b) for a, b in zip(got["rgb"], linear["rgb"])) > 30


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
