"""Fixtures of the monitoring tests: projects with a registered version, scoring databases."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from cdl_gitlab.config import Settings, load_settings  # noqa: E402

CDL_YAML = """\
version: 1
project: {{name: News, slug: news}}
profile: local
model: {{name: news, framework: pytorch, task: {task}, classes: [business, sport, tech]}}
data: {{repo_prefix: news}}
training: {{accuracy_threshold: 0.8}}
monitoring: {{enabled: true, min_samples: 100, min_labels: 20}}
cluster: {{postgres_dsn_env: CDL_TEST_SCORING_DSN}}
"""


@pytest.fixture(scope="session", autouse=True)
def _monitor_command() -> None:
    """The `monitor` group on the `cdl` CLI (the lead registers it in cdl_gitlab.cli)."""
    from cdl_gitlab.cli import cli
    from cdl_gitlab.cli.monitor_cmd import monitor

    if "monitor" not in cli.commands:
        cli.add_command(monitor)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "CDL_PROFILE",
        "CDL_CONFIG",
        "CDL_SCORING_URL",
        "CI_SERVER_URL",
        "CI_PROJECT_ID",
        "CI_JOB_URL",
        "CDL_GITLAB_TOKEN",
        "CDL_TEST_SCORING_DSN",
    ):
        monkeypatch.delenv(name, raising=False)


def make_project(root: Path, task: str = "text") -> Settings:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cdl.yaml").write_text(CDL_YAML.format(task=task), encoding="utf-8")
    return load_settings(root / "cdl.yaml")


@pytest.fixture
def text_project(tmp_path: Path) -> Settings:
    return make_project(tmp_path / "news", "text")


@pytest.fixture
def image_project(tmp_path: Path) -> Settings:
    return make_project(tmp_path / "fashion", "image")
