"""Off-cluster checkpoint storage stays out of the code Determined copies into each checkpoint
(issue 17: a trial run from an uploaded context, which has no ``.detignore``, copied its own
checkpoints into every checkpoint's ``code/`` until the path was too long)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from determined import util
from model_fixtures import TEMPLATE, write_config

from cdl_gitlab.config import load_settings
from cdl_gitlab.errors import CDLError
from cdl_gitlab.model.context_size import ignored
from cdl_gitlab.model.runner import check_storage_outside_code, run_paths
from cdl_gitlab.model.train import train_local


def _project(root: Path, detignore: bool) -> Path:
    root.mkdir()
    write_config(root, "pytorch", "text", 0.5)
    if not detignore:
        (root / ".detignore").unlink()
    (root / "model").mkdir()
    (root / "model/model_def.py").write_text("TRIAL = 1\n")
    return root


def _store_checkpoint(root: Path, checkpoints: Path) -> Path:
    """What Determined's off-cluster save does: the working folder copied as ``code/``."""
    target = checkpoints / "ck-1"
    target.mkdir(parents=True)
    cwd = Path.cwd()
    os.chdir(root)
    try:
        util.write_user_code(target, on_cluster=False)
    finally:
        os.chdir(cwd)
    return target


def test_the_rendered_detignore_keeps_checkpoints_out_of_the_code_copy(tmp_path: Path) -> None:
    root = _project(tmp_path / "project", detignore=True)
    checkpoints = run_paths(load_settings(root / "cdl.yaml"), 1).checkpoints
    assert ignored(root, checkpoints) and ignored(root, root / ".cdl")
    assert not ignored(root, root / "model")
    check_storage_outside_code(root, checkpoints)  # accepted
    copied = _store_checkpoint(root, checkpoints) / "code"
    assert (copied / "model/model_def.py").is_file()
    assert not (copied / ".cdl").exists()
    assert ".cdl/" in (TEMPLATE / ".detignore").read_text().splitlines()


def test_storage_inside_the_copied_folder_is_refused_before_training(tmp_path: Path) -> None:
    root = _project(tmp_path / "context", detignore=False)  # as an uploaded context
    settings = load_settings(root / "cdl.yaml")
    checkpoints = run_paths(settings, 1).checkpoints
    with pytest.raises(CDLError, match=r"checkpoint storage \.cdl/checkpoints/ is inside") as exc:
        check_storage_outside_code(root, checkpoints)
    assert "add /.cdl/ to" in str(exc.value) and ".detignore" in str(exc.value)
    config = root / "model/const.yaml"
    config.write_text("name: t\nentrypoint: python3 -m model.model_def\nhyperparameters: {}\n")
    with pytest.raises(CDLError, match="copies into every checkpoint"):
        train_local(settings, config, register=False, max_steps=1)
    assert not checkpoints.exists()  # nothing started
    # the failure it prevents: the copy recurses into the storage it is written to
    with pytest.raises((OSError, RecursionError)):
        _store_checkpoint(root, checkpoints)


def test_storage_outside_the_working_folder_is_accepted(tmp_path: Path) -> None:
    root = _project(tmp_path / "context", detignore=False)
    check_storage_outside_code(root, tmp_path / "storage")
