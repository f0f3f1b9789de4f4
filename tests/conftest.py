"""Fixtures shared by every test area: rendering the template into a project, the fake
Determined master and throw-away databases on the PostgreSQL server."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fakes.determined_master import DET_PASSWORD, DET_USER, FakeDeterminedMaster
from rendering import GIT_IDENTITY, RenderFn, render, snapshot_template


@pytest.fixture(autouse=True)
def _git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in GIT_IDENTITY.items():
        monkeypatch.setenv(key, value)


@pytest.fixture(autouse=True)
def _no_cluster_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's kubeconfig never reaches a test (trial submission and ``cdl data deploy``
    create Secrets when one is configured); tests set their own with a fake kubectl."""
    for name in ("KUBECONFIG", "KUBECONFIG_B64"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def template_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git-free snapshot of the template, shared by the session."""
    return snapshot_template(tmp_path_factory.mktemp("template"))


@pytest.fixture
def render_project(template_dir: Path, tmp_path: Path) -> RenderFn:
    """``render_project(starter="news", ...) -> Path`` of a freshly rendered project."""
    counter = iter(range(1_000_000))

    def _render(**answers: Any) -> Path:
        return render(template_dir, tmp_path / f"project-{next(counter)}", answers)

    return _render


@pytest.fixture
def det_master(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDeterminedMaster]:
    """A fake Determined master the real SDK logs in to with DET_USER/DET_PASS (no DET_MASTER
    set: tests point settings at ``det_master.url``)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "det-config"))  # SDK token store
    monkeypatch.setenv("DET_USER", DET_USER)
    monkeypatch.setenv("DET_PASS", DET_PASSWORD)
    for name in ("DET_MASTER", "DET_USER_TOKEN", "DET_MASTER_CERT_FILE"):
        monkeypatch.delenv(name, raising=False)
    with FakeDeterminedMaster(username=DET_USER, password=DET_PASSWORD) as fake:
        yield fake


POSTGRES_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"


class PostgresServer:
    """The PostgreSQL server on 127.0.0.1:5432 (trust auth): throw-away databases on demand."""

    @contextlib.contextmanager
    def database(self, prefix: str = "cdl_test") -> Iterator[str]:
        """A new empty database, dropped on exit; yields its URL."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql://postgres@127.0.0.1:5432/{name}"
        finally:
            with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_server() -> PostgresServer:
    """The server, or a skip saying why not; under ``CI=true`` a missing server fails."""
    try:
        import psycopg

        psycopg.connect(POSTGRES_ADMIN).close()
    except Exception as exc:  # driver missing or server unreachable
        message = f"PostgreSQL on 127.0.0.1:5432 is not reachable: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI=true: the PostgreSQL tests must run)", pytrace=False)
        pytest.skip(message)
    return PostgresServer()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a throw-away database on the PostgreSQL server, dropped after the test."""
    with postgres_server.database() as url:
        yield url
