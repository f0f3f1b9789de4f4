"""apply / rollback through a fake ``kubectl`` on PATH (the process boundary)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from deploy_models import make_project, register

from cdl_gitlab.cli.app import AppContext
from cdl_gitlab.cli.deploy_cmd import deploy
from cdl_gitlab.deploy import kube
from cdl_gitlab.registry import LocalRegistry, production_version
from fakes.kubectl import KUBECONFIG, install_fake_kubectl, kubectl_calls

SHA1 = "1111111111111111111111111111111111111111"
SHA2 = "2222222222222222222222222222222222222222"
DSN = "postgresql://scorer:hunter2@db.example.org:5432/scoring"
DEPLOY_USER = "gitlab+deploy-token-7"
DEPLOY_PASSWORD = "gldt-pullS3cret"


@pytest.fixture
def kubectl_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put a fake kubectl first on PATH; returns the file its calls are recorded in."""
    log = install_fake_kubectl(tmp_path, monkeypatch)
    monkeypatch.setenv("CDL_TEST_POSTGRES_DSN", DSN)
    monkeypatch.setenv("CI_COMMIT_BRANCH", "release")
    monkeypatch.setenv("CDL_PRODUCTION_BRANCH", "release")  # the component's input, any name
    monkeypatch.setenv("CI_DEPLOY_USER", DEPLOY_USER)  # GitLab's gitlab-deploy-token
    monkeypatch.setenv("CI_DEPLOY_PASSWORD", DEPLOY_PASSWORD)
    monkeypatch.setattr(kube, "APPEAR_POLL", 0.01)
    return log


def _registry(settings) -> LocalRegistry:
    return LocalRegistry(settings.state_dir / "registry")


def test_apply_applies_waits_and_records(text_project, kubectl_log: Path) -> None:
    registry = _registry(text_project)
    image = f"registry.example.org/group/demo/news-demo:{SHA1}"
    result = kube.apply(text_project, registry, "production", image)
    calls = kubectl_calls(kubectl_log)
    verbs = [call["argv"][0] for call in calls]
    assert verbs == ["apply", "apply", "apply", "get", "rollout"]
    secret = json.loads(calls[0]["stdin"])
    assert secret["kind"] == "Secret" and secret["metadata"]["name"] == "news-demo-scoring"
    assert secret["stringData"]["CDL_SCORING_URL"].startswith("postgresql+psycopg://scorer:")
    pull = json.loads(calls[1]["stdin"])
    assert pull["metadata"] == {
        "name": "news-demo-registry",
        "namespace": "demo-ns",
        "labels": {"app.kubernetes.io/managed-by": "cdl"},
    }
    assert pull["type"] == "kubernetes.io/dockerconfigjson"
    config = json.loads(base64.b64decode(pull["data"][".dockerconfigjson"]))
    login = config["auths"]["registry.example.org"]
    assert (login["username"], login["password"]) == (DEPLOY_USER, DEPLOY_PASSWORD)
    assert base64.b64decode(login["auth"]).decode() == f"{DEPLOY_USER}:{DEPLOY_PASSWORD}"
    assert "kind: SeldonDeployment" in calls[2]["stdin"] and image in calls[2]["stdin"]
    assert '- name: "news-demo-registry"' in calls[2]["stdin"]
    assert calls[4]["argv"][:3] == [
        "rollout",
        "status",
        "deployment/news-demo-production-default-0-classifier",
    ]
    assert "-n" in calls[4]["argv"] and "demo-ns" in calls[4]["argv"]
    for call in calls:  # secrets only ever travel through stdin and a private file
        assert "hunter2" not in " ".join(call["argv"])
        assert DEPLOY_PASSWORD not in " ".join(call["argv"])
        assert call["kubeconfig_text"] == KUBECONFIG and call["kubeconfig_mode"] == "0o600"
    assert not Path(calls[0]["kubeconfig"]).exists()  # the temporary kubeconfig is gone
    record = registry.get_version("news-demo", 1).metadata["deployments"]["production"]
    assert record["image"] == image and record["namespace"] == "demo-ns" and record["at"]
    assert production_version(registry, "news-demo").version == 1
    assert record["kind"] == "SeldonDeployment"
    assert result.version == 1 and "successfully rolled out" in result.output[-1]


def test_rollback_reapplies_the_previous_version(
    text_project, text_checkpoint: Path, kubectl_log: Path
) -> None:
    registry = _registry(text_project)
    register(text_project, text_checkpoint, uuid="ckpt-0002")
    image1 = f"registry.example.org/group/demo/news-demo:{SHA1}"
    image2 = f"registry.example.org/group/demo/news-demo:{SHA2}"
    kube.apply(text_project, registry, "production", image1, version=1)
    kube.apply(text_project, registry, "production", image2, version=2)
    assert production_version(registry, "news-demo").version == 2
    kubectl_log.unlink()
    result = kube.rollback(text_project, registry, "production")
    assert result.version == 1 and result.image == image1
    applied = kubectl_calls(kubectl_log)[2]["stdin"]
    assert image1 in applied and image2 not in applied
    assert production_version(registry, "news-demo").version == 1
    retired = registry.get_version("news-demo", 2).metadata["deployments"]
    assert retired["production"] is None and retired["retired"]["production"]["image"] == image2
    with pytest.raises(kube.KubeError, match="nothing to roll back"):
        kube.rollback(text_project, registry, "production")


def test_failures_never_leak_secrets(
    text_project, kubectl_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_KUBECTL_FAIL", "apply")
    image = f"registry.example.org/group/demo/news-demo:{SHA1}"
    with pytest.raises(kube.KubeError) as info:
        kube.apply(text_project, _registry(text_project), "staging", image)
    message = str(info.value)
    assert "failed" in message and "hunter2" not in message and "***" in message
    assert "deployments" not in _registry(text_project).get_version("news-demo", 1).metadata


def test_pull_secret_without_deploy_token_must_exist(
    text_project, kubectl_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI_DEPLOY_USER")
    monkeypatch.delenv("CI_DEPLOY_PASSWORD")
    monkeypatch.setenv("CI_REGISTRY_PASSWORD", "job-token-expires")  # never used
    image = f"registry.example.org/group/demo/news-demo:{SHA1}"
    registry = _registry(text_project)
    with pytest.raises(kube.KubeError, match=r"news-demo-registry does not exist.*CI_DEPLOY_USER"):
        kube.apply(text_project, registry, "staging", image)
    assert "deployments" not in registry.get_version("news-demo", 1).metadata
    kubectl_log.unlink()
    monkeypatch.setenv("FAKE_KUBECTL_SECRETS", "news-demo-registry")  # made by an admin
    kube.apply(text_project, registry, "staging", image)
    calls = kubectl_calls(kubectl_log)
    assert [c["argv"][:2] for c in calls[:3]] == [
        ["apply", "-f"],
        ["get", "secret"],
        ["apply", "-f"],
    ]
    assert all("job-token-expires" not in c["stdin"] for c in calls)


def test_pull_secret_failure_never_leaks_the_token(
    text_project, kubectl_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_KUBECTL_FAIL", "apply:news-demo-registry")
    image = f"registry.example.org/group/demo/news-demo:{SHA1}"
    with pytest.raises(kube.KubeError) as info:
        kube.apply(text_project, _registry(text_project), "staging", image)
    message = str(info.value)
    assert "failed" in message and "***" in message
    encoded = base64.b64encode(f"{DEPLOY_USER}:{DEPLOY_PASSWORD}".encode()).decode()
    assert DEPLOY_PASSWORD not in message and encoded not in message


def test_production_only_from_the_production_branch(
    text_project, kubectl_log: Path, monkeypatch
) -> None:
    monkeypatch.setenv("CI_COMMIT_BRANCH", "dev")
    image = f"registry.example.org/group/demo/news-demo:{SHA1}"
    with pytest.raises(kube.KubeError, match="only from the release branch"):
        kube.apply(text_project, _registry(text_project), "production", image)
    kube.apply(text_project, _registry(text_project), "staging", image)  # dev -> staging is fine
    monkeypatch.delenv("CDL_PRODUCTION_BRANCH")
    with pytest.raises(kube.KubeError, match="need CDL_PRODUCTION_BRANCH"):
        kube.apply(text_project, _registry(text_project), "production", image)


def test_missing_credentials(text_project, kubectl_log: Path, monkeypatch) -> None:
    monkeypatch.delenv("KUBECONFIG_B64")
    image = f"registry.example.org/group/demo/news-demo:{SHA1}"
    with pytest.raises(kube.KubeError, match="KUBECONFIG"):
        kube.apply(text_project, _registry(text_project), "staging", image)
    monkeypatch.setenv("KUBECONFIG", str(text_project.root / "my-kubeconfig"))
    (text_project.root / "my-kubeconfig").write_text(KUBECONFIG)
    kube.apply(text_project, _registry(text_project), "staging", image)
    assert kubectl_calls(kubectl_log)[-1]["kubeconfig"] == str(text_project.root / "my-kubeconfig")


def test_cli_apply_needs_cluster_profile_and_prints_no_secret(
    text_project, kubectl_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    local_app = AppContext(text_project.root / "cdl.yaml", None)
    refused = runner.invoke(deploy, ["apply", "--env", "staging", "--tag", SHA1], obj=local_app)
    assert refused.exit_code != 0 and "cluster profile" in str(refused.exception)
    monkeypatch.setattr("cdl_gitlab.registry.open_registry", lambda settings: _registry(settings))
    cluster_app = AppContext(text_project.root / "cdl.yaml", "cluster")
    result = runner.invoke(deploy, ["apply", "--env", "staging", "--tag", SHA1], obj=cluster_app)
    assert result.exit_code == 0, result.output
    assert "deployed news-demo v1 to staging" in result.output
    encoded = base64.b64encode(KUBECONFIG.encode()).decode()
    for secret in ("hunter2", "s3cr3t", encoded, "scorer", DEPLOY_PASSWORD):
        assert secret not in result.output


# ------------------------------------------------ serving.engine mlserver: the InferenceService
@pytest.fixture
def mlserver_project(tmp_path: Path, text_checkpoint: Path):
    settings = make_project(tmp_path / "news-ml", "pytorch", "text", "news-demo", "mlserver")
    register(settings, text_checkpoint)
    return settings


@pytest.fixture
def kserve(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cluster with KServe's CRD installed (and Seldon's)."""
    monkeypatch.setenv("FAKE_KUBECTL_CRDS", "SeldonDeployment,InferenceService")


def test_mlserver_apply_applies_the_inference_service_and_waits_until_ready(
    mlserver_project, kubectl_log: Path, kserve
) -> None:
    registry = _registry(mlserver_project)
    image = f"registry.example.org/group/demo/news-demo:{SHA1}"
    result = kube.apply(mlserver_project, registry, "production", image)
    calls = kubectl_calls(kubectl_log)
    assert [call["argv"][0] for call in calls] == ["apply", "apply", "apply", "wait"]
    secret = json.loads(calls[0]["stdin"])
    assert secret["kind"] == "Secret" and secret["metadata"]["name"] == "news-demo-scoring"
    assert secret["stringData"]["CDL_SCORING_URL"].startswith("postgresql+psycopg://scorer:")
    pull = json.loads(calls[1]["stdin"])
    assert pull["metadata"]["name"] == "news-demo-registry"
    login = json.loads(base64.b64decode(pull["data"][".dockerconfigjson"]))["auths"]
    assert login["registry.example.org"]["password"] == DEPLOY_PASSWORD
    service = yaml.safe_load(calls[2]["stdin"])
    assert service["kind"] == "InferenceService"
    assert service["metadata"] == {
        "name": "news-demo-production",
        "namespace": "demo-ns",
        "labels": {
            "app.kubernetes.io/name": "news-demo",
            "app.kubernetes.io/managed-by": "cdl",
            "cdl.dev/environment": "production",
            "cdl.dev/model-version": "1",
        },
    }
    predictor = service["spec"]["predictor"]
    assert predictor["imagePullSecrets"] == [{"name": "news-demo-registry"}]
    assert predictor["containers"][0]["image"] == image
    timeout = mlserver_project.config.deployment.rollout_timeout
    assert calls[3]["argv"] == [
        "wait",
        "--for=condition=Ready",
        "inferenceservice/news-demo-production",
        "-n",
        "demo-ns",
        f"--timeout={timeout}s",
    ]
    for call in calls:
        assert "hunter2" not in " ".join(call["argv"]) and DEPLOY_PASSWORD not in call["argv"]
    record = registry.get_version("news-demo", 1).metadata["deployments"]["production"]
    assert record["kind"] == "InferenceService" and record["image"] == image
    assert record["name"] == "news-demo-production" and record["namespace"] == "demo-ns"
    assert production_version(registry, "news-demo").version == 1
    assert result.name == "news-demo-production" and "condition met" in result.output[-1]


def test_mlserver_apply_without_kserve_is_refused_and_not_recorded(
    mlserver_project, kubectl_log: Path
) -> None:
    """The default fake cluster has only Seldon's CRD: the API server refuses the kind."""
    registry = _registry(mlserver_project)
    image = f"registry.example.org/group/demo/news-demo:{SHA1}"
    with pytest.raises(kube.KubeError, match=r"kind InferenceService: is KServe .* installed"):
        kube.apply(mlserver_project, registry, "staging", image)
    assert "deployments" not in registry.get_version("news-demo", 1).metadata
    assert [call["argv"][0] for call in kubectl_calls(kubectl_log)] == ["apply", "apply", "apply"]


def test_mlserver_apply_not_ready_in_time_fails_unrecorded(
    mlserver_project, kubectl_log: Path, kserve, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_KUBECTL_NOT_READY", "news-demo-staging")
    registry = _registry(mlserver_project)
    image = f"registry.example.org/group/demo/news-demo:{SHA1}"
    with pytest.raises(kube.KubeError, match=r"news-demo-staging in demo-ns did not become Ready"):
        kube.apply(mlserver_project, registry, "staging", image)
    assert "deployments" not in registry.get_version("news-demo", 1).metadata


def test_mlserver_rollback_reapplies_the_previous_inference_service(
    mlserver_project, text_checkpoint: Path, kubectl_log: Path, kserve
) -> None:
    registry = _registry(mlserver_project)
    register(mlserver_project, text_checkpoint, uuid="ckpt-0002")
    image1 = f"registry.example.org/group/demo/news-demo:{SHA1}"
    image2 = f"registry.example.org/group/demo/news-demo:{SHA2}"
    kube.apply(mlserver_project, registry, "production", image1, version=1)
    kube.apply(mlserver_project, registry, "production", image2, version=2)
    assert production_version(registry, "news-demo").version == 2
    kubectl_log.unlink()
    result = kube.rollback(mlserver_project, registry, "production")
    assert result.version == 1 and result.image == image1
    calls = kubectl_calls(kubectl_log)
    assert [call["argv"][0] for call in calls] == ["apply", "apply", "apply", "wait"]
    service = yaml.safe_load(calls[2]["stdin"])
    assert service["kind"] == "InferenceService"
    assert service["spec"]["predictor"]["containers"][0]["image"] == image1
    assert service["metadata"]["labels"]["cdl.dev/model-version"] == "1"
    assert production_version(registry, "news-demo").version == 1
    record = registry.get_version("news-demo", 1).metadata["deployments"]["production"]
    assert record["kind"] == "InferenceService" and record["rolled_back_from"] == 2
    retired = registry.get_version("news-demo", 2).metadata["deployments"]
    assert retired["production"] is None and retired["retired"]["production"]["image"] == image2
    with pytest.raises(kube.KubeError, match="nothing to roll back"):
        kube.rollback(mlserver_project, registry, "production")


def test_rollback_across_engines_is_refused(
    text_project, text_checkpoint: Path, kubectl_log: Path, kserve
) -> None:
    """v1 went out as a SeldonDeployment; the project then moved to mlserver."""
    registry = _registry(text_project)
    register(text_project, text_checkpoint, uuid="ckpt-0002")
    kube.apply(text_project, registry, "staging", f"r.example.org/d/news-demo:{SHA1}", 1)
    moved = text_project.config.model_copy(
        update={"serving": text_project.config.serving.model_copy(update={"engine": "mlserver"})}
    )
    mlserver = type(text_project)(**{**vars(text_project), "config": moved})
    kube.apply(mlserver, registry, "staging", f"r.example.org/d/news-demo:{SHA2}", 2)
    with pytest.raises(kube.KubeError, match=r"as a SeldonDeployment, and serving\.engine"):
        kube.rollback(mlserver, registry, "staging")
    assert registry.get_version("news-demo", 2).metadata["deployments"]["staging"]


def test_cli_apply_and_rollback_deploy_the_inference_service(
    mlserver_project, text_checkpoint: Path, kubectl_log: Path, kserve, monkeypatch
) -> None:
    register(mlserver_project, text_checkpoint, uuid="ckpt-0002")
    monkeypatch.setattr("cdl_gitlab.registry.open_registry", lambda settings: _registry(settings))
    runner = CliRunner()
    app = AppContext(mlserver_project.root / "cdl.yaml", "cluster")
    for version, sha in (("1", SHA1), ("2", SHA2)):
        result = runner.invoke(
            deploy, ["apply", "--env", "staging", "--tag", sha, "--version", version], obj=app
        )
        assert result.exit_code == 0, result.output
        assert f"deployed news-demo v{version} to staging (news-demo-staging in demo-ns" in (
            result.output
        )
        assert "inferenceservice.serving.kserve.io/news-demo-staging condition met" in (
            result.output
        )
    result = runner.invoke(deploy, ["rollback", "--env", "staging"], obj=app)
    assert result.exit_code == 0, result.output
    assert "rolled staging back to news-demo v1" in result.output
    for secret in ("hunter2", "s3cr3t", DEPLOY_PASSWORD):
        assert secret not in result.output
