"""The news use case end to end: the README's main job, on generated and on real data."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from news_corpus import write_bbc_zip

REPO = Path(__file__).resolve().parents[2]
REAL_ARCHIVE = REPO.parent / "shared" / "datasets" / "bbc-fulltext.zip"
sys.path.insert(0, str(REPO / "scripts"))

import main_job  # noqa: E402


def run_main_job(workdir: Path, mirror: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CDL_DATA_MIRROR": str(mirror),
        # the real archive matches the news starter's pin; a generated one names its own hash
        "CDL_DATA_SHA256": hashlib.sha256(mirror.read_bytes()).hexdigest(),
    }
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "main_job.py"), "--workdir", str(workdir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )


def served_lineage(project: Path) -> dict:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cdl"), "lineage", "bbc-news", "--json"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "CDL_PROFILE": "local"},
    )
    return json.loads(result.stdout)["lineage"]


def predicted_labels(output: str) -> list[str]:
    """The labels of the three articles from `cdl deploy predict`'s per-input lines."""
    start = output.index("=== predict")
    answer = output[start:].split("\n", 1)[1]
    return [
        line.split()[0]
        for line in answer.splitlines()
        if line.startswith(("business", "entertainment", "politics", "sport", "tech"))
    ][:3]


def git(project: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=project, check=True, capture_output=True, text=True
    ).stdout.strip()


def check_main_job(result: subprocess.CompletedProcess[str], workdir: Path) -> dict:
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    stages = ("render", "data", "train", "evaluate", "package", "serve", "predict", "lineage")
    for stage in (*stages, "stop"):
        assert f"=== {stage}:" in result.stdout, f"stage {stage} did not run"
    assert "=== stage timings" in result.stdout
    project = workdir / "bbc-news"
    # A fresh render of this repository, not a copy of use_case_news: its own git repository.
    assert "copier copy --trust" in result.stdout
    assert sorted(git(project, "branch", "--format=%(refname:short)").split()) == ["dev", "main"]
    assert git(project, "rev-parse", "--show-toplevel") == str(project.resolve())
    answers = (project / ".copier-answers.yml").read_text()
    assert f"_src_path: {REPO}" in answers
    assert (project / "reports" / "model" / "report.md").is_file()
    assert (project / "reports" / "model" / "confusion_matrix.png").is_file()
    # The server was stopped: no pid file left behind.
    assert not list((project / ".cdl").glob("**/*.pid"))
    return served_lineage(project)


@pytest.mark.slow
def test_main_job_on_a_generated_corpus(tmp_path: Path):
    archive = write_bbc_zip(tmp_path / "bbc-fulltext.zip")
    result = run_main_job(tmp_path / "work", archive)
    lineage = check_main_job(result, tmp_path / "work")
    assert lineage["code"]["commit"] == git(tmp_path / "work" / "bbc-news", "rev-parse", "HEAD")
    assert lineage["data"]["train"]["repo"] == "bbc-news-train-validate"
    assert lineage["metrics"]["test"]["accuracy"] >= 0.95
    assert predicted_labels(result.stdout) == ["business", "sport", "tech"]


@pytest.mark.slow
@pytest.mark.skipif(not REAL_ARCHIVE.is_file(), reason="the BBC archive mirror is not here")
def test_main_job_on_the_real_bbc_archive(tmp_path: Path):
    result = run_main_job(tmp_path / "work", REAL_ARCHIVE)
    lineage = check_main_job(result, tmp_path / "work")
    accuracy = lineage["metrics"]["test"]["accuracy"]
    print(f"real BBC held-out test accuracy: {accuracy:.4f}")
    assert accuracy >= 0.96, f"test accuracy {accuracy:.4f} is below the use case's goal 0.96"
    assert predicted_labels(result.stdout) == ["business", "sport", "tech"]


def test_main_job_without_data_fails_early_saying_how_to_fix_it(monkeypatch, tmp_path: Path):
    monkeypatch.delenv("CDL_DATA_MIRROR", raising=False)
    monkeypatch.setattr(main_job, "SHARED_MIRROR", tmp_path / "absent.zip")
    # A closed port on loopback: "no network" without leaving the machine.
    monkeypatch.setattr(main_job, "CANONICAL_URL", "http://127.0.0.1:9/bbc-fulltext.zip")
    with pytest.raises(SystemExit) as stop:
        main_job.find_mirror()
    message = str(stop.value)
    assert "CDL_DATA_MIRROR=" in message and "bbc-fulltext.zip" in message


def test_main_job_refuses_a_workdir_inside_this_checkout():
    with pytest.raises(SystemExit) as stop:
        main_job.fresh_workdir(REPO / "out" / "main-job")
    assert "outside this checkout" in str(stop.value)


def test_main_job_rejects_a_missing_mirror(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("CDL_DATA_MIRROR", str(tmp_path / "nope.zip"))
    with pytest.raises(SystemExit) as stop:
        main_job.find_mirror()
    assert "does not exist" in str(stop.value)
