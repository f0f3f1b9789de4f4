"""PachydermStore and deploy through the real pachyderm-sdk Client against a fake pachd."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from pachyderm_sdk.api import pfs

from cdl_gitlab.config import Settings, load_settings
from cdl_gitlab.data.commits import CommitRef, Provenance
from cdl_gitlab.data.errors import DataError, NotFoundError, SpecError
from cdl_gitlab.data.pachyderm import create_pipelines, wait
from cdl_gitlab.data.pachyderm.create_pipelines import deploy_pipelines
from cdl_gitlab.data.pachyderm.spec import lint_spec
from cdl_gitlab.data.stores import open_store
from cdl_gitlab.data.stores.pachyderm_store import PachydermStore
from cdl_gitlab.kubectl import KubeError
from fakes.kubectl import (
    AppliedSecrets,
    applied,
    install_fake_kubectl,
    kubectl_calls,
    secret_values,
)
from fakes.pachd import FakePachd
from fakes.pachd_worker import FakeWorkers, image_env


@pytest.fixture(scope="module")
def pachd() -> Iterator[FakePachd]:
    server = FakePachd().start()
    yield server
    server.stop()


@pytest.fixture
def pach(pachd: FakePachd) -> PachydermStore:
    pachd.repos.clear()
    pachd.pipeline_inputs.clear()
    pachd.effective.clear()
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


DIGEST = "sha256:" + "ab" * 32
PIPELINES = {
    "demo-train-validate",
    "demo-test-validate",
    "demo-train-store-labels",
    "demo-test-store-labels",
}
INPUT_REPOS = ["demo-test", "demo-test-labels", "demo-train", "demo-train-labels"]


def with_pull_secret(project: Settings, name: str = "demo-registry") -> Settings:
    config = project.root / "cdl.yaml"
    config.write_text(config.read_text() + f"cluster: {{image_pull_secret: {name}}}\n")
    return load_settings(config, "cluster")


def test_deploy_creates_the_input_repos_then_the_pipelines(
    project: Settings, pach: PachydermStore, pachd: FakePachd, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CDL_IMAGE_TAG", "feedbeef")
    monkeypatch.setenv("CI_REGISTRY_IMAGE", "registry.example.org/demo")
    pachd.pipelines.clear()
    lines: list[str] = []
    sent = deploy_pipelines(with_pull_secret(project), pach, image_digest=DIGEST, echo=lines.append)
    # no kubectl access here: the Secrets are left as they are, and the first line says so
    assert lines.pop(0) == (
        "the pipelines' Secrets demo-registry, demo-postgres in namespace default are neither "
        "created nor checked (no kubectl access: KUBECONFIG or KUBECONFIG_B64 is not set): "
        "they must exist there"
    )
    assert {name for name, _ in sent} == PIPELINES
    assert lines[:4] == [f"{repo}: input repo created" for repo in INPUT_REPOS]
    assert sorted(lines[4:]) == sorted(f"{name}: created or updated" for name in PIPELINES)
    # pachd made the output repos; the labels repos exist on the cluster profile too
    assert set(pach.list_repos()) == set(INPUT_REPOS) | PIPELINES
    received = [json.loads(text) for text in pachd.pipelines]
    assert len(received) == 4
    for spec in received:
        image = f"registry.example.org/demo/data:feedbeef@{DIGEST}"
        assert spec["transform"]["image"] == image
        assert spec["transform"]["image_pull_secrets"] == ["demo-registry"]
        assert lint_spec(spec) == []
    names = [spec["pipeline"]["name"] for spec in received]
    assert names.index("demo-train-validate") < names.index("demo-train-store-labels")

    lines.clear()  # a second deploy (the next pipeline) updates; the repos are kept
    deploy_pipelines(with_pull_secret(project), pach, image_digest=DIGEST, echo=lines.append)
    assert lines[1:5] == [f"{repo}: input repo exists" for repo in INPUT_REPOS]
    assert len(pachd.pipelines) == 8


def test_deploy_creates_the_specs_secrets_in_pachyderms_namespace(
    project: Settings,
    pach: PachydermStore,
    pachd: FakePachd,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """With kubectl access, the Secrets the specs use are made in Pachyderm's namespace before
    the pipelines are sent: the pull secret from the deploy token, the labels Secret
    (``transform.secrets``: key dsn into CDL_POSTGRES_DSN) from the job's CDL_POSTGRES_DSN;
    the pipelines then find them (the fake pachd checks), and no value ever shows."""
    dsn = "postgresql://labeller:pa55@db.example.org/labels"
    monkeypatch.setenv("CDL_IMAGE_TAG", "feedbeef")
    monkeypatch.setenv("CI_REGISTRY_IMAGE", "registry.example.org/demo")
    monkeypatch.setenv("CI_DEPLOY_USER", "gitlab+deploy-token-3")
    monkeypatch.setenv("CI_DEPLOY_PASSWORD", "gldt-pach-pull")
    monkeypatch.setenv("CDL_POSTGRES_DSN", dsn)
    log = install_fake_kubectl(tmp_path, monkeypatch)
    config = project.root / "cdl.yaml"
    config.write_text(
        config.read_text() + "cluster: {image_pull_secret: demo-registry, namespace: apps, "
        "pachyderm_namespace: pach}\n"
    )
    settings = load_settings(config, "cluster")
    pachd.pipelines.clear()
    monkeypatch.setattr(pachd, "kube_secrets", AppliedSecrets(log))
    lines: list[str] = []
    deploy_pipelines(settings, pach, image_digest=DIGEST, echo=lines.append)
    pull, labels = applied(log)
    assert pull["metadata"]["name"] == "demo-registry"
    assert pull["metadata"]["namespace"] == "pach"
    auths = json.loads(base64.b64decode(pull["data"][".dockerconfigjson"]))["auths"]
    assert auths["registry.example.org"]["password"] == "gldt-pach-pull"
    assert labels["metadata"]["namespace"] == "pach" and labels["type"] == "Opaque"
    assert secret_values(labels) == {"dsn": dsn}
    assert lines[:2] == [
        "secret/demo-registry configured in namespace pach",
        "secret/demo-postgres configured in namespace pach",
    ]
    assert len(pachd.pipelines) == 4
    shown = [" ".join(c["argv"]) for c in kubectl_calls(log)] + lines
    assert not any(value in text for value in ("gldt-pach-pull", "pa55") for text in shown)
    # without the values each must exist: a clear error before any pipeline is sent
    monkeypatch.delenv("CI_DEPLOY_PASSWORD")
    monkeypatch.delenv("CDL_POSTGRES_DSN")
    log.unlink()
    pachd.pipelines.clear()
    with pytest.raises(KubeError, match="demo-registry does not exist in namespace pach"):
        deploy_pipelines(settings, pach, image_digest=DIGEST)
    monkeypatch.setenv("FAKE_KUBECTL_SECRETS", "demo-registry")
    missing = "demo-postgres does not exist in namespace pach: set "
    with pytest.raises(KubeError, match=missing) as err:
        deploy_pipelines(settings, pach, image_digest=DIGEST)
    assert "CDL_POSTGRES_DSN (a masked CI/CD variable)" in str(err.value)
    assert "--from-literal=dsn=" in str(err.value)
    assert pachd.pipelines == []
    # existing Secrets are kept as they are
    monkeypatch.setenv("FAKE_KUBECTL_SECRETS", "demo-registry,demo-postgres")
    monkeypatch.setattr(pachd, "kube_secrets", None)
    lines.clear()
    deploy_pipelines(settings, pach, image_digest=DIGEST, echo=lines.append)
    assert lines[:2] == [
        "secret/demo-registry exists in namespace pach",
        "secret/demo-postgres exists in namespace pach",
    ]
    assert applied(log) == [] and len(pachd.pipelines) == 4


def test_spec_secret_variables_group_keys_by_secret() -> None:
    specs = [
        ("a", {"transform": {"secrets": [{"name": "s", "key": "dsn", "env_var": "DSN"}]}}),
        ("b", {"transform": {"secrets": [{"name": "s", "key": "token", "env_var": "TOKEN"}]}}),
        ("c", {"transform": {"secrets": [{"name": "files", "mount_path": "/secrets"}]}}),
        ("d", {"transform": {}}),
    ]
    assert create_pipelines.spec_secret_variables(specs) == {
        "s": {"dsn": "DSN", "token": "TOKEN"},
        "files": {},
    }


def test_pachd_refuses_a_pipeline_before_its_input_repos(
    project: Settings, pach: PachydermStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 17 item 4: the pipelines sent before the repos they read are refused."""
    monkeypatch.setenv("CDL_IMAGE_TAG", "feedbeef")
    monkeypatch.setenv("CI_REGISTRY_IMAGE", "registry.example.org/demo")
    monkeypatch.setattr(create_pipelines, "input_repos", lambda specs: [])  # the old order
    with pytest.raises(NotFoundError, match=r"repo default/demo-t(rain|est) not found"):
        deploy_pipelines(project, pach)
    assert pach.list_repos() == []


def test_the_digest_must_be_a_digest(project: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDL_IMAGE_TAG", "feedbeef")
    monkeypatch.setenv("CI_REGISTRY_IMAGE", "registry.example.org/demo")
    with pytest.raises(SpecError, match="not of the form sha256:<64 hex digits>"):
        deploy_pipelines(project, dry_run=True, image_digest="latest")
    specs = deploy_pipelines(project, dry_run=True)  # no digest: the tag alone
    assert all("@" not in spec["transform"]["image"] for _, spec in specs)
    assert all("image_pull_secrets" not in spec["transform"] for _, spec in specs)


def _spec(**changes: object) -> dict:
    spec = {
        "pipeline": {"name": "p"},
        "input": {"pfs": {"repo": "in", "glob": "/*"}},
        "transform": {"image": "registry.example.org/demo/data:1", "cmd": ["python", "s.py"]},
    }
    spec.update(changes)
    return spec


@pytest.mark.parametrize(
    ("spec", "code", "message"),
    [
        (_spec(paralelism_spec={}), "INVALID_ARGUMENT", 'unknown field "paralelism_spec"'),
        (_spec(transform={"image": "i", "cmd": "python s.py"}), "INVALID_ARGUMENT", "list"),
        (_spec(pipeline={}), "UNKNOWN", "request.Pipeline.Name cannot be empty"),
        (_spec(transform=None), "UNKNOWN", "pipeline must specify a transform"),
        (_spec(input={"pfs": {"repo": "in"}}), "UNKNOWN", "input must specify a glob"),
        (_spec(input={}), "UNKNOWN", "no input set"),
        (
            _spec(input={"cross": [{"pfs": {"repo": "in", "glob": "/"}}] * 2}),
            "UNKNOWN",
            'name "in" was used more than once',
        ),
        (_spec(input={"pfs": {"repo": "nope", "glob": "/"}}), "not found", "repo default/nope"),
    ],
)
def test_fake_pachd_refuses_what_pachd_refuses(
    pach: PachydermStore, spec: dict, code: str, message: str
) -> None:
    pach.create_repo("in")
    with pytest.raises(DataError) as caught:
        pach.create_pipeline("p", json.dumps(spec))
    assert code in str(caught.value) and message in str(caught.value)


def test_fake_pachd_pipeline_rules(pach: PachydermStore, pachd: FakePachd) -> None:
    pach.create_repo("in")
    pach.create_repo("taken")
    no_image = _spec(transform={"cmd": ["python", "s.py"]})
    pach.create_pipeline("p", json.dumps(no_image))
    assert pachd.effective["p"]["transform"]["image"] == "ubuntu:20.04"  # pachd's default
    assert "p" in pach.list_repos()  # the output repo
    with pytest.raises(grpc.RpcError, match='pipeline "p" already exists'):  # no update
        pach.client.pps.create_pipeline_v2(create_pipeline_request_json=json.dumps(_spec()))
    with pytest.raises(DataError, match="a repo with the same name already exists"):
        pach.create_pipeline("taken", json.dumps(_spec(pipeline={"name": "taken"})))
    with pytest.raises(DataError, match="cannot start a commit on an output branch"):
        pach.put("p", "master", {"f": b"1"})
    pach.put("in", "master", {"f": b"1"})  # opens the output commit of its commit set
    output = pachd.repos["p"].commits[pach.resolve("in", "master").id]
    with pytest.raises(grpc.RpcError, match="cannot finish a pipeline output"):
        pach.client.pfs.finish_commit(commit=pfs.Commit(repo=pach.repo_message("p"), id=output.id))


def test_fake_pachd_requires_the_specs_kubernetes_secrets(
    project: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CDL_IMAGE_TAG", "feedbeef")
    monkeypatch.setenv("CI_REGISTRY_IMAGE", "registry.example.org/demo")
    server = FakePachd(kube_secrets={"demo-postgres": {"password": "x"}}).start()
    try:
        store = PachydermStore.from_address(server.address)
        with pytest.raises(DataError, match="Kubernetes secret demo-postgres missing key dsn"):
            deploy_pipelines(project, store)
        server.kube_secrets = {"demo-postgres": {"dsn": "postgresql://db/labels"}}
        deploy_pipelines(project, store)
        assert len(server.effective) == 4
    finally:
        server.stop()


def _killed_put(pach: PachydermStore, repo: str, files: dict[str, bytes], meta: bool) -> str:
    """A put killed after part of its files: the commit stays open (as a SIGKILL leaves it)."""
    description = json.dumps({"message": "split", "provenance": {}, "files": 9}) if meta else ""
    commit = pach.client.pfs.start_commit(
        branch=pfs.Branch(repo=pach.repo_message(repo), name="master"), description=description
    )
    adds = [pfs.ModifyFileRequest(add_file=pfs.AddFile(path=p, raw=d)) for p, d in files.items()]
    pach.client.pfs.modify_file(iter([pfs.ModifyFileRequest(set_commit=commit), *adds]))
    return commit.id


def test_pachd_refuses_a_commit_on_an_open_parent(pach: PachydermStore) -> None:
    """Issue 17 item 5: real pachd refuses to start a commit on top of an open one."""
    pach.create_repo("r")
    open_id = _killed_put(pach, "r", {"/a": b"partial"}, meta=True)
    with pytest.raises(grpc.RpcError, match=f"parent commit default/r@{open_id} has not been"):
        pach.client.pfs.start_commit(branch=pfs.Branch(repo=pach.repo_message("r"), name="master"))


def test_an_open_commit_a_killed_run_left_is_dropped_never_finished(
    pach: PachydermStore, pachd: FakePachd, caplog: pytest.LogCaptureFixture
) -> None:
    pach.create_repo("demo-train")
    validate = {"name": "demo-train-validate"}
    reads = {"pfs": {"repo": "demo-train", "glob": "/"}}
    pach.create_pipeline("demo-train-validate", json.dumps(_spec(pipeline=validate, input=reads)))
    before = pach.put("demo-train", "master", {"a/1.txt": b"complete"}, "split 1")
    open_id = _killed_put(pach, "demo-train", {"/a/2.txt": b"part"}, meta=True)
    assert open_id in pachd.repos["demo-train-validate"].commits  # its job waits for it
    with caplog.at_level(logging.WARNING):
        files = {"a/1.txt": b"complete", "b/3.txt": b"x"}
        after = pach.put("demo-train", "master", files, "split 2")
    assert after.parent == before.id
    assert open_id not in pachd.repos["demo-train"].commits
    assert open_id not in pachd.repos["demo-train-validate"].commits  # the whole commit set
    assert [c.id for c in pach.history("demo-train", "master")] == [after.id, before.id]
    assert pach.list_files("demo-train", "master") == ["a/1.txt", "b/3.txt"]
    (record,) = [r for r in caplog.records if open_id in r.getMessage()]
    assert "may be partial" in record.getMessage() and "'split'" in record.getMessage()


def test_an_open_commit_someone_else_started_is_an_error(pach: PachydermStore) -> None:
    pach.create_repo("r")
    pach.put("r", "master", {"f": b"1"})
    open_id = _killed_put(pach, "r", {"/g": b"2"}, meta=False)
    with pytest.raises(DataError, match=f"head commit {open_id} is open and was not started by"):
        pach.put("r", "master", {"f": b"3"})
    assert pach.list_branches("r")["master"] == open_id  # left as it was


def test_fake_workers_run_a_job_as_a_pod_would(pach: PachydermStore, pachd: FakePachd) -> None:
    """The job sees only the spec's env and /pfs; a private image needs its pull secret."""
    step = (
        "import os, pathlib; root = pathlib.Path(os.environ['CDL_PFS_ROOT']); "
        "text = (root / 'data' / 'a.txt').read_text(); "
        "(root / 'out' / 'b.txt').write_text(text.upper() + os.environ.get('HOME', '-'))"
    )
    private = "registry.example.org/demo"
    spec = _spec(
        pipeline={"name": "upper"},
        input={"pfs": {"name": "data", "repo": "in", "glob": "/"}},
        transform={"image": f"{private}/data:1", "cmd": ["python", "-c", step]},
    )
    pach.create_repo("in")
    pach.create_pipeline("upper", json.dumps(spec))
    with FakeWorkers(pachd, Path.cwd(), image_env(), {"reg": {}}, private) as workers:
        refused = pach.put("in", "master", {"a.txt": b"one"})
        with pytest.raises(DataError, match=f"failed on commit {refused.id}: ErrImagePull"):
            wait.wait_for_outputs(pach, ["upper"], refused.id, 10, lambda line: None, poll=0.05)
    (_, _, error), *_ = workers.ran
    assert error.startswith(f"ErrImagePull: {private}/data:1")

    spec["transform"]["image_pull_secrets"] = ["reg"]
    pach.create_pipeline("upper", json.dumps(spec))
    with FakeWorkers(pachd, Path.cwd(), image_env(), {"reg": {}}, private) as workers:
        commit = pach.put("in", "master", {"a.txt": b"two"})
        wait.wait_for_outputs(pach, ["upper"], commit.id, 10, lambda line: None, poll=0.05)
    assert workers.ran == [("upper", commit.id, "")]
    assert pach.read("upper", commit.id, "b.txt") == b"TWO-"  # no HOME: not the test's env
