"""The KServe InferenceService of serving.engine mlserver: built from cdl.yaml, pinned image,
probes on the V2 routes, resources, pull Secret, and the CRD rules it is checked against."""

from __future__ import annotations

import copy

import pytest
import yaml
from click.testing import CliRunner
from deploy_models import make_project

from cdl_gitlab.cli.app import AppContext
from cdl_gitlab.cli.deploy_cmd import deploy
from cdl_gitlab.deploy.inference_service import (
    build_inference_service,
    render_inference_service,
    validate_inference_service,
)
from cdl_gitlab.deploy.manifest import ManifestError

SHA = "3f2a9c1d0b4e5f60718293a4b5c6d7e8f9a0b1c2"
DIGEST = "registry.example.org/group/demo/news-demo@sha256:" + "ab" * 32


@pytest.fixture
def mlserver_project(tmp_path):
    return make_project(tmp_path / "news", "pytorch", "text", "news-demo", "mlserver")


def test_inference_service_from_cdl_yaml(mlserver_project) -> None:
    manifest = render_inference_service(mlserver_project, "staging", DIGEST, model_version=4)
    doc = manifest.document
    assert doc["apiVersion"] == "serving.kserve.io/v1beta1" and doc["kind"] == "InferenceService"
    assert doc["metadata"] == {
        "name": "news-demo-staging",
        "namespace": "demo-ns",
        "labels": {
            "app.kubernetes.io/name": "news-demo",
            "app.kubernetes.io/managed-by": "cdl",
            "cdl.dev/environment": "staging",
            "cdl.dev/model-version": "4",
        },
    }
    predictor = doc["spec"]["predictor"]
    assert predictor["minReplicas"] == predictor["maxReplicas"] == 2
    assert predictor["imagePullSecrets"] == [{"name": "news-demo-registry"}]
    (container,) = predictor["containers"]
    assert container["image"] == DIGEST
    assert container["readinessProbe"]["httpGet"] == {
        "path": "/v2/models/news-demo/ready",
        "port": 8080,
    }
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["resources"] == {
        "requests": {"cpu": "250m", "memory": "512Mi"},
        "limits": {"cpu": "250m", "memory": "512Mi"},
    }
    env = {variable["name"]: variable for variable in container["env"]}
    assert env["CDL_SCORING_URL"]["valueFrom"]["secretKeyRef"]["name"] == "news-demo-scoring"
    assert env["CDL_FEEDBACK_TOKEN"]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert yaml.safe_load(manifest.text) == doc


def test_cli_manifest_picks_the_inference_service_by_engine(mlserver_project, tmp_path) -> None:
    app = AppContext(mlserver_project.root / "cdl.yaml", None)
    result = CliRunner().invoke(deploy, ["manifest", "--env", "production", "--tag", SHA], obj=app)
    assert result.exit_code == 0, result.output
    doc = yaml.safe_load(result.output)
    assert doc["kind"] == "InferenceService"
    assert doc["spec"]["predictor"]["containers"][0]["image"].endswith(f"news-demo:{SHA}")
    moving = CliRunner().invoke(
        deploy, ["manifest", "--env", "staging", "--image", "repo/news-demo:latest"], obj=app
    )
    assert moving.exit_code != 0 and "moving tag" in str(moving.exception)
    # apply deploys it on the cluster profile only (tests/deploy/test_deploy_kube.py)
    refused = CliRunner().invoke(deploy, ["apply", "--env", "staging", "--tag", SHA], obj=app)
    assert refused.exit_code != 0 and "cluster profile" in str(refused.exception)


def _broken(document: dict, change) -> dict:
    copied = copy.deepcopy(document)
    change(copied)
    return copied


BREAKS = [
    (lambda d: d.update(apiVersion="serving.kserve.io/v1alpha1"), "apiVersion"),
    (lambda d: d["metadata"].update(name="News_Demo"), "metadata/name"),
    (lambda d: d["metadata"].update(name="n" * 64), "metadata/name"),
    (lambda d: d["metadata"].update(namespace="Demo NS"), "metadata/namespace"),
    (lambda d: d["spec"]["predictor"].update(minReplicas=3, maxReplicas=2), "minReplicas"),
    (
        lambda d: d["spec"]["predictor"]["containers"].append(
            d["spec"]["predictor"]["containers"][0]
        ),
        "exactly one container",
    ),
    (lambda d: d["spec"]["predictor"]["containers"][0].update(image="r/m:latest"), "image"),
    (
        lambda d: d["spec"]["predictor"]["containers"][0]["resources"]["limits"].update(cpu="lots"),
        "not a quantity",
    ),
    (lambda d: d["spec"]["predictor"]["containers"][0].pop("readinessProbe"), "readinessProbe"),
    (
        lambda d: d["spec"]["predictor"]["containers"][0]["livenessProbe"]["httpGet"].update(
            path="v2"
        ),
        "livenessProbe",
    ),
    (lambda d: d["spec"]["predictor"]["containers"][0]["ports"][0].update(name="web"), "http1"),
    (
        lambda d: d["spec"]["predictor"]["containers"][0]["env"].append(
            {"name": "DB", "value": "postgresql://u:pw@db/x"}
        ),
        "secret",
    ),
    (lambda d: d["spec"]["predictor"]["imagePullSecrets"].append({}), "imagePullSecrets"),
    (lambda d: d["spec"].pop("predictor"), "spec/predictor"),
]


@pytest.mark.parametrize(("change", "says"), BREAKS, ids=[says for _, says in BREAKS])
def test_inference_service_rules(mlserver_project, change, says) -> None:
    document = build_inference_service(mlserver_project, "staging", DIGEST)
    validate_inference_service(document)
    with pytest.raises(ManifestError, match=says.replace("/", ".")):
        validate_inference_service(_broken(document, change))
