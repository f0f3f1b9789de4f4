"""The rendered wrapper class in-process: scoring to PostgreSQL, failures that never fail."""

from __future__ import annotations

import importlib.util
import socket
from pathlib import Path

import numpy as np
import pytest
from deploy_models import KNOWN_TEXTS
from seldon_core.flask_utils import SeldonMicroserviceException

from cdl_gitlab.deploy.package import package_version
from cdl_gitlab.scoring import ScoringStore
from cdl_gitlab.serving.server import SCORING_FAILURES, CDLModel


def _wrapper_class(settings, artifact: Path, monkeypatch: pytest.MonkeyPatch) -> type:
    """Import ``deployment/NewsDemo.py`` as Seldon does and point it at ``artifact``."""
    monkeypatch.setenv("CDL_ARTIFACT_DIR", str(artifact))
    path = settings.root / "deployment" / "NewsDemo.py"
    spec = importlib.util.spec_from_file_location("NewsDemo", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cls = module.NewsDemo
    assert issubclass(cls, CDLModel)
    assert cls.default_artifact_dir == path.parent / "artifact"
    return cls


@pytest.mark.postgres
def test_wrapper_scores_into_postgres(text_project, postgres_url, tmp_path, monkeypatch) -> None:
    artifact, _ = package_version(text_project, 1, tmp_path / "artifact")
    monkeypatch.setenv("CDL_SCORING_URL", postgres_url)
    model = _wrapper_class(text_project, artifact, monkeypatch)()
    assert model.init_metadata()["name"] == "news-demo"
    model.load()
    response = model.predict(np.array(list(KNOWN_TEXTS)), ["text"])
    assert response.tags["predictions"] == list(KNOWN_TEXTS.values())
    assert response.data.shape == (3, 3)
    with pytest.raises(SeldonMicroserviceException) as info:
        model.predict(np.array([]), [])
    assert info.value.status_code == 400 and info.value.reason == "EMPTY_INPUT"
    assert model.writer.flush(15)
    store = ScoringStore(postgres_url)
    rows = [r for r in store.read(model="news-demo") if r.request_id == response.tags["request_id"]]
    assert [r.predicted for r in rows] == list(KNOWN_TEXTS.values())
    assert store.count(model="news-demo", status="rejected") >= 1
    store.dispose()
    model.writer.close()


def test_scoring_failure_never_fails_a_prediction(text_project, tmp_path, monkeypatch) -> None:
    artifact, _ = package_version(text_project, 1, tmp_path / "artifact")
    # a "database" that accepts the connection and never answers: storing hangs until the
    # driver's connect timeout, so a prediction that waited for it could not have returned yet
    silent = socket.create_server(("127.0.0.1", 0))
    port = silent.getsockname()[1]
    monkeypatch.setenv(
        "CDL_SCORING_URL", f"postgresql+psycopg://nobody:pw@127.0.0.1:{port}/x?connect_timeout=3"
    )
    model = _wrapper_class(text_project, artifact, monkeypatch)()
    model.load()
    response = model.predict("the football match", [])
    assert response.tags["predictions"] == ["sport"]
    assert (model.writer.written, model.writer.failed) == (0, 0)  # still waiting for the store
    assert model.writer.flush(30) and model.writer.failed == 1
    failures = [m for m in model.drain() if m["key"] == SCORING_FAILURES]
    assert failures and failures[0]["value"] == 1 and failures[0]["type"] == "COUNTER"
    assert model.health_status()["scoring"] == {"written": 0, "failed": 1}
    model.writer.close()
    silent.close()


def test_limits_from_environment_and_unloaded_health(text_project, tmp_path, monkeypatch) -> None:
    artifact, _ = package_version(text_project, 1, tmp_path / "artifact")
    monkeypatch.setenv("CDL_MAX_BATCH", "2")
    model = _wrapper_class(text_project, artifact, monkeypatch)()
    with pytest.raises(SeldonMicroserviceException) as info:
        model.health_status()
    assert info.value.status_code == 503
    model.load()
    assert model.writer is None  # no CDL_SCORING_URL: scoring is off, serving is not
    with pytest.raises(SeldonMicroserviceException) as info:
        model.send_feedback_raw({"truth": {"strData": "sport"}})
    assert info.value.status_code == 503 and info.value.reason == "NO_SCORING_STORE"
    with pytest.raises(SeldonMicroserviceException) as info:
        model.predict(np.array(["a", "b", "c"]), [])
    assert info.value.reason == "TOO_MANY_ITEMS"
    assert model.predict(np.array(["goal", "vote"]), []).tags["predictions"] == [
        "sport",
        "politics",
    ]


def test_deferred_scoring_records_are_built_in_the_writer_thread(tmp_path) -> None:
    import threading

    from cdl_gitlab.scoring import ScoringRecord, ScoringWriter

    url = f"sqlite:///{tmp_path / 'scoring.sqlite'}"
    threads: list[str] = []

    def build() -> list[ScoringRecord]:
        threads.append(threading.current_thread().name)
        return [
            ScoringRecord(request_id="r1", model="m", version="1", item_index=i) for i in (0, 1)
        ]

    def broken() -> list[ScoringRecord]:
        raise ValueError("no statistics")

    writer = ScoringWriter(lambda: ScoringStore(url))
    writer.submit_deferred(build, 2)
    writer.submit_deferred(broken, 3)
    assert writer.flush(15)
    assert threads == ["cdl-scoring"]
    assert (writer.written, writer.failed) == (2, 3)
    writer.close()
    store = ScoringStore(url)
    assert [r.item_index for r in store.read(model="m")] == [0, 1]
    store.dispose()
