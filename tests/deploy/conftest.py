"""Fixtures of the deployment tests: tiny trained models, projects, real Seldon servers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from deploy_models import (  # noqa: E402
    keras_image_checkpoint,
    make_project,
    mlserver_executable,
    register,
    serve_project,
    torch_image_checkpoint,
    torch_text_checkpoint,
)

from cdl_gitlab.config import Settings  # noqa: E402


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "CDL_PROFILE",
        "CDL_CONFIG",
        "CDL_SCORING_URL",
        "CDL_ARTIFACT_DIR",
        "CI_COMMIT_SHA",
        "CI_COMMIT_BRANCH",
        "CDL_STAGING_BRANCH",
        "CDL_PRODUCTION_BRANCH",
        "CI_COMMIT_REF_NAME",
        "CI_REGISTRY_IMAGE",
        "CI_REGISTRY",
        "CI_DEPLOY_USER",
        "CI_DEPLOY_PASSWORD",
        "KUBECONFIG",
        "KUBECONFIG_B64",
        "CDL_MAX_BATCH",
        "CDL_MAX_TEXT_CHARS",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def text_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return torch_text_checkpoint(tmp_path_factory.mktemp("ckpt") / "text")


@pytest.fixture(scope="session")
def image_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return keras_image_checkpoint(tmp_path_factory.mktemp("ckpt") / "image")


@pytest.fixture
def text_project(tmp_path: Path, text_checkpoint: Path) -> Settings:
    """A PyTorch text project with v1 registered."""
    settings = make_project(tmp_path / "news", "pytorch", "text", "news-demo")
    register(settings, text_checkpoint)
    return settings


@pytest.fixture
def image_project(tmp_path: Path, image_checkpoint: Path) -> Settings:
    """A Keras image project with v1 registered."""
    settings = make_project(tmp_path / "fashion", "keras", "image", "fashion-demo")
    register(settings, image_checkpoint)
    return settings


@pytest.fixture(scope="module")
def text_server(tmp_path_factory: pytest.TempPathFactory, text_checkpoint: Path):
    """The PyTorch text model served by the real seldon-core microservice (SQLite scoring)."""
    settings = make_project(
        tmp_path_factory.mktemp("served") / "news", "pytorch", "text", "news-demo"
    )
    register(settings, text_checkpoint)
    yield from serve_project(settings)


@pytest.fixture(scope="module")
def image_server(tmp_path_factory: pytest.TempPathFactory, image_checkpoint: Path, postgres_server):
    """The Keras image model served by the real microservice, scoring into PostgreSQL."""
    settings = make_project(
        tmp_path_factory.mktemp("served") / "fashion", "keras", "image", "fashion-demo"
    )
    register(settings, image_checkpoint)
    with postgres_server.database() as url:
        yield from serve_project(settings, scoring_url=url)


@pytest.fixture(scope="session")
def torch_image_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return torch_image_checkpoint(tmp_path_factory.mktemp("ckpt") / "torch-image")


@pytest.fixture(scope="module")
def mlserver_text_server(tmp_path_factory: pytest.TempPathFactory, text_checkpoint: Path):
    """The PyTorch text model served by MLServer with the CDL runtime (SQLite scoring)."""
    executable = mlserver_executable()
    settings = make_project(
        tmp_path_factory.mktemp("mlserved") / "news", "pytorch", "text", "news-demo", "mlserver"
    )
    register(settings, text_checkpoint)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CDL_MLSERVER", str(executable))
        yield from serve_project(settings)


@pytest.fixture(scope="module")
def mlserver_image_server(tmp_path_factory: pytest.TempPathFactory, torch_image_ckpt: Path):
    """A PyTorch image model served by MLServer with the CDL runtime (SQLite scoring)."""
    executable = mlserver_executable()
    settings = make_project(
        tmp_path_factory.mktemp("mlserved") / "fashion",
        "pytorch",
        "image",
        "fashion-demo",
        "mlserver",
    )
    register(settings, torch_image_ckpt)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CDL_MLSERVER", str(executable))
        yield from serve_project(settings)
