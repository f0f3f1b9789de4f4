"""DeterminedRegistry and cluster submission: the real determined SDK against a fake master."""

from __future__ import annotations

import json
import socket
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from cdl_gitlab.config import load_settings
from cdl_gitlab.data.names import validated_repo
from cdl_gitlab.data.stores import open_store
from cdl_gitlab.errors import CDLError
from cdl_gitlab.model.checkpoint import ModelSpec
from cdl_gitlab.model.cluster import (
    ClusterError,
    recorded_experiments,
    register_best_checkpoint,
    register_cluster_experiment,
    submit_experiment,
)
from cdl_gitlab.registry import (
    Checkpoint,
    DeterminedRegistry,
    RegistryError,
    open_registry,
    production_version,
)
from fakes.determined_master import (
    DET_PASSWORD,
    FakeDeterminedMaster,
    salted_hash,
    trial_endpoints,
)
from fakes.pachd import FakePachd

PASSWORD = DET_PASSWORD


@pytest.fixture
def master(det_master: FakeDeterminedMaster) -> FakeDeterminedMaster:
    return det_master


@pytest.fixture
def cluster_settings(project: Path, master: FakeDeterminedMaster, monkeypatch):
    monkeypatch.setenv("DET_MASTER", master.url)
    trial_endpoints(monkeypatch)
    return load_settings(project / "cdl.yaml", profile="cluster")


def test_open_registry_cluster_profile(cluster_settings, master) -> None:
    registry = open_registry(cluster_settings)
    assert isinstance(registry, DeterminedRegistry)
    assert registry.master == master.url
    assert master.requests == []  # login is lazy


def test_registry_operations_through_the_sdk(master, tmp_path: Path) -> None:
    master.add_checkpoint("ck-1", {"state_dict.pth": b"one", "sub/extra.json": b"{}"})
    master.add_checkpoint("ck-2", {"state_dict.pth": b"two"})
    registry = DeterminedRegistry(master.url)
    registry.create_model("news", description="BBC news", labels=["text"])
    registry.create_model("news")  # idempotent: no second POST
    assert master.calls("POST", "/api/v1/models") == [("POST", "/api/v1/models")]
    assert registry.list_models() == ["news"]

    first = registry.register_version("news", Checkpoint("ck-1"), {"lineage": {"code": "c1"}})
    second = registry.register_version("news", Checkpoint("ck-2"))
    assert (first.version, first.checkpoint_uuid, first.path) == (1, "ck-1", None)
    assert first.metadata == {"lineage": {"code": "c1"}}
    assert second.version == 2 and second.metadata == {}
    post = next(r for r in master.requests if r.path == "/api/v1/models/news/versions")
    assert post.json == {"checkpointUuid": "ck-1", "modelName": "news"}
    assert [v.version for v in registry.list_versions("news")] == [1, 2]
    assert registry.get_version("news").checkpoint_uuid == "ck-2"
    assert registry.get_version("news", 1).created.tzinfo is not None

    merged = registry.add_metadata("news", 1, {"lineage": {"metrics": {"test": {"acc": 0.9}}}})
    assert merged.metadata == {"lineage": {"code": "c1", "metrics": {"test": {"acc": 0.9}}}}
    patches = len(master.calls("PATCH"))
    with pytest.raises(RegistryError, match=r"news v1: metadata key lineage\.code"):
        registry.add_metadata("news", 1, {"lineage": {"code": "other"}})
    assert len(master.calls("PATCH")) == patches  # nothing sent on a conflict
    assert registry.add_metadata("news", 1, {"lineage": {"code": "c9"}}, overwrite=True)
    assert master.state.versions["news"][0]["metadata"]["lineage"]["code"] == "c9"

    registry.add_metadata("news", 1, {"deployments": {"production": {"image": "img@sha256:1"}}})
    assert production_version(registry, "news").version == 1

    with pytest.raises(RegistryError, match="'news' has no version 9"):
        registry.get_version("news", 9)
    with pytest.raises(RegistryError, match="not found"):
        registry.register_version("news", Checkpoint("no-such-checkpoint"))

    dest = registry.download("news", 1, tmp_path / "dl")
    assert (dest / "state_dict.pth").read_bytes() == b"one"
    assert (dest / "sub" / "extra.json").read_bytes() == b"{}"
    assert ("GET", "/checkpoints/ck-1") in master.calls()  # proxied through the master


def test_login_sends_only_the_salted_hash(master) -> None:
    DeterminedRegistry(master.url).list_models()
    login = master.requests[0]
    assert (login.method, login.path) == ("POST", "/api/v1/auth/login")
    assert login.json == {"username": "ci-bot", "password": salted_hash(PASSWORD), "isHashed": True}
    assert all(PASSWORD not in json.dumps(r.json) for r in master.requests)
    assert master.requests[1].headers["authorization"] == f"Bearer {master.token}"


def test_login_and_connection_errors_are_clear(master, monkeypatch) -> None:
    monkeypatch.setenv("DET_PASS", "wrong-password")
    with pytest.raises(RegistryError, match="DET_USER and DET_PASS") as info:
        DeterminedRegistry(master.url).list_models()
    assert "wrong-password" not in str(info.value)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before use: nothing listens there
    with pytest.raises(RegistryError, match="cannot reach the Determined master"):
        DeterminedRegistry(f"http://127.0.0.1:{port}").list_models()
    with pytest.raises(RegistryError, match="no Determined master configured"):
        DeterminedRegistry("").list_models()


def _context(tmp_path: Path) -> Path:
    context = tmp_path / "model"
    (context / "data").mkdir(parents=True)
    (context / "train.py").write_text("print('training')\n")
    (context / "model_def.py").write_text("class Net: ...\n")
    (context / "data" / "big.bin").write_bytes(b"\0" * 1024)
    (context / "last.ckpt").write_bytes(b"weights")
    (context / ".detignore").write_text("data/\n*.ckpt\n")
    (context / "const.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "news-const",
                "entrypoint": "python3 train.py",
                "hyperparameters": {"global_batch_size": 32, "lr": 0.01},
                "searcher": {"name": "single", "metric": "validation_loss"},
                "resources": {"slots_per_trial": 1},
            }
        )
    )
    return context


def test_submit_builds_the_request_and_waits(cluster_settings, master, tmp_path: Path) -> None:
    context = _context(tmp_path)
    lines: list[str] = []
    experiment_id = submit_experiment(
        cluster_settings,
        context / "const.yaml",
        context,
        overrides={"hyperparameters": {"lr": 0.1}, "resources": {"slots_per_trial": 2}},
        poll_interval=0.01,
        echo=lines.append,
    )
    (create,) = [r for r in master.requests if r.path == "/api/v1/experiments"]
    config = yaml.safe_load(create.json["config"])
    assert config["hyperparameters"] == {"global_batch_size": 32, "lr": 0.1}
    assert config["resources"] == {"slots_per_trial": 2}
    assert create.json["activate"] is True
    files = master.state.experiment_files[experiment_id]
    assert set(files) == {"train.py", "model_def.py", "const.yaml"}  # data/, *.ckpt ignored
    assert files["train.py"] == b"print('training')\n"

    assert lines[0] == f"submitted experiment {experiment_id} to {master.url}"
    assert lines[-1] == (
        f"experiment {experiment_id}: COMPLETED 100%; trials: 1 COMPLETED; batches: 300"
    )
    assert any("ACTIVE" in line and "RUNNING" in line for line in lines[1:-1])
    (record,) = recorded_experiments(cluster_settings)
    assert record["id"] == experiment_id and record["state"] == "COMPLETED"
    assert record["master"] == master.url and record["name"] == "news-const"


def test_submit_reports_failed_experiments(cluster_settings, master, tmp_path: Path) -> None:
    context = _context(tmp_path)
    master.experiment_states = ["STATE_ACTIVE", "STATE_ERROR"]
    with pytest.raises(ClusterError, match=r"experiment \d+ ended ERROR"):
        submit_experiment(
            cluster_settings,
            context / "const.yaml",
            context,
            poll_interval=0.01,
            echo=lambda line: None,
        )
    assert recorded_experiments(cluster_settings)[0]["state"] == "ERROR"


def test_submit_without_wait_and_lint_gate(cluster_settings, master, tmp_path: Path) -> None:
    context = _context(tmp_path)
    experiment_id = submit_experiment(
        cluster_settings, context / "const.yaml", context, wait=False, echo=lambda line: None
    )
    assert master.calls("GET", f"/api/v1/experiments/{experiment_id}") == []
    assert recorded_experiments(cluster_settings)[0]["state"] == "ACTIVE"
    before = len(master.requests)
    with pytest.raises(ClusterError, match=r"searcher\.max_length: deprecated"):
        submit_experiment(
            cluster_settings,
            context / "const.yaml",
            context,
            overrides={"searcher": {"max_length": {"batches": 10}}},
            echo=lambda line: None,
        )
    assert len(master.requests) == before  # nothing sent


def test_create_model_tolerates_a_concurrent_creator(master, monkeypatch) -> None:
    registry = DeterminedRegistry(master.url)
    registry.create_model("news")
    answers = [False]  # "not there yet" ... then another process creates it first
    original = DeterminedRegistry._model_exists

    def exists(self, name: str) -> bool:
        return answers.pop() if answers else original(self, name)

    monkeypatch.setattr(DeterminedRegistry, "_model_exists", exists)
    registry.create_model("news")  # the master answers 409; no error
    assert len(master.calls("POST", "/api/v1/models")) == 2


def _cdl_checkpoint(data: dict[str, str]) -> dict[str, bytes]:
    spec = ModelSpec("pytorch", "text", [8], ["business", "sport"], {"lr": 0.01}, data=data)
    return {"cdl_model.json": json.dumps(asdict(spec)).encode(), "model_state.pt": b"weights"}


@pytest.fixture
def pachd(monkeypatch: pytest.MonkeyPatch):
    server = FakePachd().start()
    monkeypatch.setenv("PACHD_ADDRESS", server.address)
    yield server
    server.stop()


def test_cluster_run_registers_the_best_checkpoint_with_lineage(
    cluster_settings, master, pachd, tmp_path: Path
) -> None:
    store = open_store(cluster_settings)
    test_repo = validated_repo(cluster_settings, "test")
    store.create_repo(test_repo)
    test_commit = store.put(test_repo, "master", {"sport/1.txt": b"a match"}, "validated")
    train_data = {"repo": "news-train-validate", "branch": "master", "commit": "c0ffee"}
    context = _context(tmp_path)
    experiment_id = submit_experiment(
        cluster_settings, context / "const.yaml", context, poll_interval=0.01, echo=print
    )
    files = _cdl_checkpoint(train_data)
    trial = experiment_id * 100 + 1
    master.add_checkpoint("worse", files, experiment_id, trial, validation={"validation_loss": 0.4})
    master.add_checkpoint("best", files, experiment_id, trial, validation={"validation_loss": 0.1})
    master.add_checkpoint("unvalidated", files, experiment_id, trial)
    master.add_checkpoint(
        "partial", files, experiment_id, trial, "STATE_PARTIAL", {"validation_loss": 0.0}
    )
    master.add_checkpoint("other-experiment", files, 999, 1, validation={"validation_loss": 0.0})
    exp_conf = yaml.safe_load((context / "const.yaml").read_text())
    lines: list[str] = []

    version = register_best_checkpoint(cluster_settings, experiment_id, exp_conf, echo=lines.append)

    assert (version.model, version.version, version.checkpoint_uuid) == ("news", 1, "best")
    assert lines == [f"best checkpoint best (trial {trial}; validation_loss 0.1000)"]
    meta = version.metadata
    assert meta["metrics"] == {"validation": {"validation_loss": 0.1}}
    assert (meta["experiment_id"], meta["trial_id"]) == (experiment_id, trial)
    lineage = meta["lineage"]
    assert lineage["data"]["train"] == train_data
    assert lineage["data"]["test"] == {
        "repo": test_repo,
        "branch": "master",
        "commit": test_commit.id,
    }
    assert lineage["checkpoint"] == {"uuid": "best", "steps_completed": 100}
    assert lineage["logs"]["experiment_registry"] == f"{master.url}/det/experiments/{experiment_id}"
    assert lineage["cost"]["wall_seconds"] >= 0
    assert recorded_experiments(cluster_settings)[0]["registered"] == {
        "model": "news",
        "version": 1,
    }
    assert master.calls("GET", "/checkpoints/best") == [("GET", "/checkpoints/best")]
    # registering the experiment again (`cdl model register ID`) refuses the same checkpoint
    with pytest.raises(CDLError, match=r"checkpoint best is already registered as news v1"):
        register_cluster_experiment(cluster_settings, experiment_id)


def test_cluster_experiment_registers_only_once_completed(
    cluster_settings, master, tmp_path: Path
) -> None:
    master.experiment_states = ["STATE_ACTIVE"]
    context = _context(tmp_path)
    experiment_id = submit_experiment(
        cluster_settings, context / "const.yaml", context, wait=False, echo=print
    )
    with pytest.raises(ClusterError, match=rf"experiment {experiment_id} is ACTIVE"):
        register_cluster_experiment(cluster_settings, experiment_id)


def test_cluster_run_without_a_usable_checkpoint_registers_nothing(
    cluster_settings, master, pachd, tmp_path: Path
) -> None:
    context = _context(tmp_path)
    exp_conf = yaml.safe_load((context / "const.yaml").read_text())
    experiment_id = submit_experiment(
        cluster_settings, context / "const.yaml", context, poll_interval=0.01, echo=print
    )
    with pytest.raises(ClusterError, match="no completed checkpoint with a validation"):
        register_best_checkpoint(cluster_settings, experiment_id, exp_conf)
    # a checkpoint that is not a CDL checkpoint is refused before anything is registered
    master.add_checkpoint(
        "foreign", {"state_dict.pth": b"x"}, experiment_id, 1, validation={"validation_loss": 1}
    )
    with pytest.raises(ClusterError, match=r"foreign: .* is not a CDL checkpoint"):
        register_best_checkpoint(cluster_settings, experiment_id, exp_conf)
    assert master.calls("POST", "/api/v1/models") == []
