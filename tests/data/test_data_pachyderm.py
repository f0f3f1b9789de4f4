"""PachydermStore and deploy through the real pachyderm-sdk Client against a fake pachd."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdl_gitlab.config import Settings, load_settings
from cdl_gitlab.data.commits import CommitRef, Provenance
from cdl_gitlab.data.errors import DataError, NotFoundError
from cdl_gitlab.data.pachyderm.create_pipelines import deploy_pipelines
from cdl_gitlab.data.pachyderm.spec import lint_spec
from cdl_gitlab.data.stores import open_store
from cdl_gitlab.data.stores.pachyderm_store import PachydermStore
from fakes.pachd import FakePachd


@pytest.fixture(scope="module")
def pachd() -> Iterator[FakePachd]:
    server = FakePachd().start()
    yield server
    server.stop()


@pytest.fixture
def pach(pachd: FakePachd) -> PachydermStore:
    pachd.repos.clear()
    pachd.pipeline_inputs.clear()
    pachd.fail_on_path = None
    return PachydermStore.from_address(pachd.address)


def test_open_store_on_the_cluster_profile(
    project: Settings, pachd: FakePachd, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PACHD_ADDRESS", pachd.address)
    store = open_store(load_settings(project.root / "cdl.yaml", "cluster"))
    assert isinstance(store, PachydermStore)
    monkeypatch.delenv("PACHD_ADDRESS")
    with pytest.raises(DataError, match="PACHD_ADDRESS"):
        open_store(load_settings(project.root / "cdl.yaml", "cluster"))


def test_put_read_history_provenance(pach: PachydermStore, tmp_path: Path) -> None:
    pach.create_repo("demo-raw")
    pach.create_repo("demo-raw")  # idempotent
    assert pach.list_repos() == ["demo-raw"]
    first = pach.put("demo-raw", "master", {"a/1.txt": b"hello world", "b/2.txt": b"x"}, "one")
    assert pach.list_files("demo-raw", "master") == ["a/1.txt", "b/2.txt"]
    assert pach.read("demo-raw", "master", "a/1.txt") == b"hello world"

    folder = tmp_path / "src"
    (folder / "a").mkdir(parents=True)
    (folder / "a" / "1.txt").write_bytes(b"changed")
    provenance = Provenance((CommitRef("demo-raw", first.id),), "spec123")
    second = pach.put("demo-raw", "master", folder, "two", provenance)
    assert pach.list_files("demo-raw", "master") == ["a/1.txt"]  # put replaces the tree
    assert pach.read("demo-raw", first.id, "b/2.txt") == b"x"
    assert second.parent == first.id and second.file_count == 1
    assert pach.provenance("demo-raw", "master") == provenance
    assert [c.message for c in pach.history("demo-raw", "master")] == ["two", "one"]
    assert pach.head("demo-raw", "master").id == second.id

    dest = tmp_path / "checkout"
    assert pach.checkout("demo-raw", first.id, dest).id == first.id
    assert (dest / "a" / "1.txt").read_bytes() == b"hello world"


def test_branches(pach: PachydermStore) -> None:
    pach.create_repo("r")
    base = pach.put("r", "master", {"f": b"1"})
    dev = pach.create_branch("r", "dev", "master")
    assert dev.id == base.id and dev.branch == "dev"
    pach.put("r", "dev", {"f": b"2"})
    assert pach.read("r", "master", "f") == b"1" and pach.read("r", "dev", "f") == b"2"
    assert set(pach.list_branches("r")) == {"master", "dev"}


def test_failed_put_is_dropped(pach: PachydermStore, pachd: FakePachd) -> None:
    pach.create_repo("r")
    before = pach.put("r", "master", {"f": b"1"})
    pachd.fail_on_path = "boom.txt"
    with pytest.raises(DataError, match="storage full"):
        pach.put("r", "master", {"a.txt": b"a", "boom.txt": b"b"})
    assert pach.resolve("r", "master").id == before.id
    assert len(pachd.repos["r"].commits) == 1


def test_client_side_crash_mid_stream_is_dropped(
    pach: PachydermStore, pachd: FakePachd, monkeypatch: pytest.MonkeyPatch
) -> None:
    pach.create_repo("r")
    before = pach.put("r", "master", {"f": b"1"})
    real = PachydermStore._operations

    def crashing(self: PachydermStore, commit: object, items: list) -> Iterator[object]:
        for index, operation in enumerate(real(self, commit, items)):
            if index == 3:
                raise OSError("source file vanished (simulated)")
            yield operation

    monkeypatch.setattr(PachydermStore, "_operations", crashing)
    with pytest.raises(DataError, match="Pachyderm error"):
        pach.put("r", "master", {f"{i}.txt": b"x" for i in range(5)})
    assert pach.resolve("r", "master").id == before.id
    assert list(pachd.repos["r"].commits) == [before.id]


def test_not_found(pach: PachydermStore) -> None:
    with pytest.raises(NotFoundError):
        pach.list_branches("missing")
    pach.create_repo("r")
    pach.put("r", "master", {"f": b"1"})
    with pytest.raises(NotFoundError):
        pach.resolve("r", "deadbeef")
    with pytest.raises(NotFoundError):
        pach.read("r", "master", "nope")


def test_deploy_sends_the_linted_specs(
    project: Settings, pachd: FakePachd, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CDL_IMAGE_TAG", "feedbeef")
    monkeypatch.setenv("CI_REGISTRY_IMAGE", "registry.example.org/demo")
    pachd.pipelines.clear()
    client = PachydermStore.from_address(pachd.address).client
    sent = deploy_pipelines(project, client)
    assert {name for name, _ in sent} == {
        "demo-train-validate",
        "demo-test-validate",
        "demo-train-store-labels",
        "demo-test-store-labels",
    }
    received = [json.loads(text) for text in pachd.pipelines]
    assert len(received) == 4
    for spec in received:
        assert spec["transform"]["image"] == "registry.example.org/demo/data:feedbeef"
        assert lint_spec(spec) == []
    names = [spec["pipeline"]["name"] for spec in received]
    assert names.index("demo-train-validate") < names.index("demo-train-store-labels")
