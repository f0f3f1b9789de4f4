"""What submission adds to an experiment config for the cluster (in memory only)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdl_gitlab.config import Settings, load_settings
from cdl_gitlab.model.trial_environment import (
    TrialEnvironmentError,
    apply_trial_environment,
    pinned,
    trial_image,
    without_secrets,
)

DIGEST = "sha256:" + "0f" * 32
IMAGE = f"registry.example.org/g/p/train@{DIGEST}"
CUDA = f"registry.example.org/g/p/train-cuda:1.0@{DIGEST}"


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in ("CDL_TRAIN_IMAGE", "PACH_PYTHON_AUTH_TOKEN", "PACH_PYTHON_OIDC_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PACHD_ADDRESS", "pachd:30650")
    monkeypatch.setenv("LABELS_DSN", "postgresql://u:p@db/labels")
    (tmp_path / "cdl.yaml").write_text(
        "version: 1\nproject: {name: T, slug: tiny}\n"
        "model: {name: tiny, framework: pytorch, task: text}\ndata: {repo_prefix: tiny}\n"
        "cluster: {postgres_dsn_env: LABELS_DSN}\n",
        encoding="utf-8",
    )
    return load_settings(tmp_path / "cdl.yaml", profile="cluster")


def test_pinned() -> None:
    assert pinned(IMAGE) and pinned(CUDA)
    assert not pinned("registry.example.org/g/p/train:abc")
    assert not pinned("registry.example.org/g/p/train@sha256:short")


def test_image_from_the_build_keeps_a_pinned_cuda_image_of_the_config(monkeypatch) -> None:
    monkeypatch.setenv("CDL_TRAIN_IMAGE", IMAGE)
    assert trial_image({}) == {"cpu": IMAGE, "cuda": IMAGE}
    assert trial_image({"image": {"cuda": CUDA}}) == {"cpu": IMAGE, "cuda": CUDA}
    with pytest.raises(TrialEnvironmentError, match=r"environment\.image\.cuda is .*:latest"):
        trial_image({"image": {"cuda": "nvidia/cuda:latest"}})


def test_image_of_the_config_must_be_pinned_too(monkeypatch) -> None:
    monkeypatch.delenv("CDL_TRAIN_IMAGE", raising=False)
    assert trial_image({"image": IMAGE}) == IMAGE
    assert trial_image({"image": {"cpu": IMAGE, "cuda": CUDA}}) == {"cpu": IMAGE, "cuda": CUDA}
    with pytest.raises(TrialEnvironmentError, match="pinned by digest"):
        trial_image({"image": {"cpu": IMAGE, "cuda": "determinedai/pytorch-ngc:0.38.1"}})


def test_variables_merge_into_lists_and_per_device_maps(settings, monkeypatch) -> None:
    monkeypatch.setenv("CDL_TRAIN_IMAGE", IMAGE)
    monkeypatch.setenv("PACH_PYTHON_AUTH_TOKEN", "tok")
    config = {"environment": {"environment_variables": ["OMP_NUM_THREADS=1", "CDL_PROFILE=x"]}}
    result = apply_trial_environment(settings, config)
    assert result["environment"]["environment_variables"] == [
        "OMP_NUM_THREADS=1",
        "CDL_PROFILE=cluster",
        "PACHD_ADDRESS=pachd:30650",
        "LABELS_DSN=postgresql://u:p@db/labels",
        "PACH_PYTHON_AUTH_TOKEN=tok",
    ]
    assert config["environment"]["environment_variables"][1] == "CDL_PROFILE=x"  # a copy
    per_device = {"environment": {"environment_variables": {"cuda": ["NCCL_DEBUG=INFO"]}}}
    variables = apply_trial_environment(settings, per_device)["environment"][
        "environment_variables"
    ]
    assert variables["cuda"][0] == "NCCL_DEBUG=INFO"
    assert "LABELS_DSN=postgresql://u:p@db/labels" in variables["cpu"]
    assert "LABELS_DSN=postgresql://u:p@db/labels" in variables["cuda"]
    kept = without_secrets(settings, {"environment": {"environment_variables": variables}})
    assert all(
        "LABELS_DSN" not in v and "PACH_PYTHON" not in v
        for v in kept["environment"]["environment_variables"]["cpu"]
    )


def test_pod_spec_of_the_config_is_kept(settings, monkeypatch) -> None:
    monkeypatch.setenv("CDL_TRAIN_IMAGE", IMAGE)
    config_file = settings.root / "cdl.yaml"
    config_file.write_text(
        config_file.read_text().replace(
            "postgres_dsn_env: LABELS_DSN",
            "postgres_dsn_env: LABELS_DSN, trial_secret: cdl-trial, image_pull_secret: registry",
        )
    )
    settings = load_settings(config_file, profile="cluster")
    config = {
        "environment": {
            "pod_spec": {
                "spec": {
                    "imagePullSecrets": [{"name": "other"}],
                    "containers": [
                        {
                            "name": "determined-container",
                            "env": [{"name": "LABELS_DSN", "value": "stale"}, {"name": "A"}],
                            "volumeMounts": [{"name": "v", "mountPath": "/v"}],
                        }
                    ],
                }
            }
        }
    }
    result = apply_trial_environment(settings, config)["environment"]
    spec = result["pod_spec"]["spec"]
    assert spec["imagePullSecrets"] == [{"name": "other"}, {"name": "registry"}]
    (container,) = spec["containers"]
    assert container["volumeMounts"] == [{"name": "v", "mountPath": "/v"}]
    assert [entry["name"] for entry in container["env"]] == [
        "A",
        "LABELS_DSN",
        "PACH_PYTHON_AUTH_TOKEN",
        "PACH_PYTHON_OIDC_TOKEN",
    ]
    assert container["env"][1]["valueFrom"]["secretKeyRef"] == {
        "name": "cdl-trial",
        "key": "LABELS_DSN",
    }
    assert container["env"][2]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert not any("LABELS_DSN" in item for item in result["environment_variables"])
