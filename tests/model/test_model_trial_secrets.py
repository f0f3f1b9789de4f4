"""The trials' Kubernetes Secrets, created before submission through a fake ``kubectl`` on
PATH (the process boundary): values only on its stdin, never in argv, output or errors."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cdl_gitlab.cli.app import AppContext
from cdl_gitlab.cli.model_cmd import model
from cdl_gitlab.config import Settings, load_settings
from cdl_gitlab.kubectl import KubeError
from cdl_gitlab.model.trial_environment import secret_references
from cdl_gitlab.model.trial_secrets import (
    TrialSecretsError,
    ensure_trial_secrets,
    trial_secrets_needed,
)
from fakes.kubectl import KUBECONFIG, applied, install_fake_kubectl, kubectl_calls, secret_values

DSN = "postgresql://labeller:hunter2@db.example.org:5432/labels"
PACH_TOKEN = "pach-t0ken-secret"
DEPLOY_USER = "gitlab+deploy-token-7"
DEPLOY_PASSWORD = "gldt-pullS3cret"
IMAGE = "registry.example.org/g/p/train@sha256:" + "0f" * 32
SECRET_VALUES = (DSN, "hunter2", PACH_TOKEN, DEPLOY_PASSWORD)
CLUSTER = (
    "cluster: {postgres_dsn_env: LABELS_DSN, namespace: apps, determined_namespace: det, "
    "trial_secret: cdl-trial, image_pull_secret: train-registry}\n"
)


def _settings(root: Path, cluster: str = CLUSTER, profile: str = "cluster") -> Settings:
    (root / "cdl.yaml").write_text(
        "version: 1\nproject: {name: T, slug: tiny}\n"
        "model: {name: tiny, framework: pytorch, task: text}\ndata: {repo_prefix: tiny}\n"
        + cluster,
        encoding="utf-8",
    )
    return load_settings(root / "cdl.yaml", profile=profile)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return _settings(tmp_path)


@pytest.fixture
def kubectl_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A CI job of the cluster profile: fake kubectl, kubeconfig, secrets, deploy token."""
    log = install_fake_kubectl(tmp_path, monkeypatch)
    for name in ("PACH_PYTHON_OIDC_TOKEN", "CI_REGISTRY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LABELS_DSN", DSN)
    monkeypatch.setenv("PACH_PYTHON_AUTH_TOKEN", PACH_TOKEN)
    monkeypatch.setenv("CDL_TRAIN_IMAGE", IMAGE)
    monkeypatch.setenv("CI_DEPLOY_USER", DEPLOY_USER)
    monkeypatch.setenv("CI_DEPLOY_PASSWORD", DEPLOY_PASSWORD)
    return log


def _assert_no_secret_leaves(log: Path, *texts: str) -> None:
    login = f"{DEPLOY_USER}:{DEPLOY_PASSWORD}"
    values = [
        *SECRET_VALUES,
        *(base64.b64encode(v.encode()).decode() for v in (*SECRET_VALUES, login)),
    ]
    for call in kubectl_calls(log):
        argv = " ".join(call["argv"])
        assert not any(value in argv for value in values), argv
        assert call["kubeconfig_text"] == KUBECONFIG and call["kubeconfig_mode"] == "0o600"
    for text in texts:
        assert not any(value in text for value in values), text


def test_the_trial_secret_and_pull_secret_are_applied_in_determineds_namespace(
    settings: Settings, kubectl_log: Path
) -> None:
    lines = ensure_trial_secrets(settings)

    trial, pull = applied(kubectl_log)
    assert trial["metadata"] == {
        "name": "cdl-trial",
        "namespace": "det",
        "labels": {"app.kubernetes.io/managed-by": "cdl"},
    }
    assert trial["type"] == "Opaque"
    values = secret_values(trial)
    assert values == {"LABELS_DSN": DSN, "PACH_PYTHON_AUTH_TOKEN": PACH_TOKEN}
    # every reference the trial's pod spec makes that is not optional has its key
    for entry in secret_references(settings, "cdl-trial"):
        ref = entry["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "cdl-trial"
        assert ref.get("optional") or ref["key"] in values
    assert pull["metadata"]["name"] == "train-registry" and pull["metadata"]["namespace"] == "det"
    assert pull["type"] == "kubernetes.io/dockerconfigjson"
    config = json.loads(base64.b64decode(pull["data"][".dockerconfigjson"]))
    login = config["auths"]["registry.example.org"]  # the training image's registry
    assert (login["username"], login["password"]) == (DEPLOY_USER, DEPLOY_PASSWORD)
    assert lines == [
        "secret/cdl-trial configured in namespace det (keys LABELS_DSN, PACH_PYTHON_AUTH_TOKEN)",
        "secret/train-registry configured in namespace det",
    ]
    assert [c["argv"] for c in kubectl_calls(kubectl_log)] == [["apply", "-f", "-"]] * 2
    _assert_no_secret_leaves(kubectl_log, *lines)
    assert not Path(kubectl_calls(kubectl_log)[0]["kubeconfig"]).exists()


def test_determineds_namespace_defaults_to_the_clusters(tmp_path: Path, kubectl_log: Path) -> None:
    settings = _settings(tmp_path, CLUSTER.replace(" determined_namespace: det,", ""))
    ensure_trial_secrets(settings)
    assert {s["metadata"]["namespace"] for s in applied(kubectl_log)} == {"apps"}


def test_a_failing_kubectl_never_shows_a_secret(
    settings: Settings, kubectl_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fake echoes the stdin of a failing call to stderr, as a server error might."""
    for failing in ("apply:cdl-trial", "apply:train-registry"):
        monkeypatch.setenv("FAKE_KUBECTL_FAIL", failing)
        with pytest.raises(KubeError) as info:
            ensure_trial_secrets(settings)
        message = str(info.value)
        assert "kubectl apply failed" in message and "***" in message
        _assert_no_secret_leaves(kubectl_log, message)


def test_without_the_values_the_trial_secret_must_exist(
    settings: Settings, kubectl_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LABELS_DSN")
    with pytest.raises(TrialSecretsError) as info:
        ensure_trial_secrets(settings)
    message = str(info.value)
    assert "the trial secret cdl-trial (cluster.trial_secret) does not exist in namespace det" in (
        message
    )
    assert "set LABELS_DSN" in message
    assert "kubectl create secret generic cdl-trial -n det --from-literal=LABELS_DSN=" in message
    assert applied(kubectl_log) == []
    (call,) = kubectl_calls(kubectl_log)
    assert call["argv"] == [
        "get",
        "secret",
        "cdl-trial",
        "-n",
        "det",
        "--ignore-not-found",
        "-o",
        "name",
    ]

    monkeypatch.setenv("FAKE_KUBECTL_SECRETS", "cdl-trial")  # an administrator made it
    lines = ensure_trial_secrets(settings)
    assert lines[0] == (
        "secret/cdl-trial exists in namespace det (kept as it is: LABELS_DSN is not set)"
    )
    assert [s["metadata"]["name"] for s in applied(kubectl_log)] == ["train-registry"]


def test_without_the_deploy_token_the_pull_secret_must_exist(
    settings: Settings, kubectl_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI_DEPLOY_USER")
    monkeypatch.delenv("CI_DEPLOY_PASSWORD")
    with pytest.raises(KubeError, match=r"train-registry does not exist in namespace det.*DEPLOY"):
        ensure_trial_secrets(settings)
    monkeypatch.setenv("FAKE_KUBECTL_SECRETS", "train-registry")
    lines = ensure_trial_secrets(settings)
    assert lines[1] == "secret/train-registry exists in namespace det"
    assert [s["metadata"]["name"] for s in applied(kubectl_log)] == ["cdl-trial", "cdl-trial"]


def test_without_kubectl_access_the_secrets_are_left_as_they_are(
    tmp_path: Path, kubectl_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No kubeconfig, or no kubectl in the job's image (the CDL role images have none): the
    submission goes on and says the Secrets must exist; `cdl model secrets` refuses."""
    settings = _settings(tmp_path)
    assert trial_secrets_needed(settings)
    monkeypatch.delenv("KUBECONFIG_B64")
    (line,) = ensure_trial_secrets(settings)
    assert line == (
        "the trials' Secrets cdl-trial, train-registry in namespace det are neither created "
        "nor checked (no kubectl access: KUBECONFIG or KUBECONFIG_B64 is not set): they must "
        "exist there"
    )
    with pytest.raises(TrialSecretsError, match="no kubectl access"):
        ensure_trial_secrets(settings, required=True)
    monkeypatch.setenv("KUBECONFIG_B64", base64.b64encode(KUBECONFIG.encode()).decode())
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # kubectl not installed
    (line,) = ensure_trial_secrets(settings)
    assert "(kubectl is not installed in this job's image (or set $CDL_KUBECTL))" in line
    assert kubectl_calls(kubectl_log) == []
    (tmp_path / "none").mkdir()
    assert not trial_secrets_needed(_settings(tmp_path / "none", "cluster: {}\n"))


def test_cli_secrets_prints_what_it_did_and_no_value(tmp_path: Path, kubectl_log: Path) -> None:
    runner = CliRunner()
    _settings(tmp_path)
    local = runner.invoke(model, ["secrets"], obj=AppContext(tmp_path / "cdl.yaml", "local"))
    assert local.exit_code != 0 and "cluster profile" in str(local.exception)
    assert kubectl_calls(kubectl_log) == []

    result = runner.invoke(model, ["secrets"], obj=AppContext(tmp_path / "cdl.yaml", "cluster"))
    assert result.exit_code == 0, result.output
    assert "secret/cdl-trial configured in namespace det" in result.output
    assert "secret/train-registry configured in namespace det" in result.output
    _assert_no_secret_leaves(kubectl_log, result.output)
    encoded = base64.b64encode(KUBECONFIG.encode()).decode()
    assert "s3cr3t" not in result.output and encoded not in result.output
