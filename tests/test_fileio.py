"""Atomic-write temp files get the permissions a plain open() gives (mkstemp's 0600 would hide outputs)."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from vqdsr_core.fileio import current_umask, temp_beside
from vqdsr_core.weights import save_weights


@pytest.fixture
def umask():
    saved = os.umask(0o022)
    yield lambda m: os.umask(m)
    os.umask(saved)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_temp_files_follow_the_umask(tmp_path, umask, mask):
    umask(mask)
    assert current_umask() == mask
    tmp = temp_beside(tmp_path / "sub" / "out.mkv", ".mkv")
    assert tmp.parent == tmp_path / "sub" and tmp.name.startswith(".out.mkv.") and tmp.suffix == ".mkv"
    assert stat.S_IMODE(tmp.stat().st_mode) == 0o666 & ~mask


def test_weight_files_are_readable_by_others_under_a_usual_umask(tmp_path, umask):
    umask(0o022)
    path = save_weights(tmp_path / "w.safetensors", torch.nn.Linear(2, 2), arch="test", config={})
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]
