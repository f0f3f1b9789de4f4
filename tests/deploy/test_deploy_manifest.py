"""SeldonDeployment manifests: rendered from the project template, schema-valid, pinned images."""

from __future__ import annotations

import copy
import re

import pytest
import yaml
from click.testing import CliRunner
from pydantic import ValidationError

from cdl_gitlab.cli.app import AppContext
from cdl_gitlab.cli.deploy_cmd import deploy
from cdl_gitlab.config import DeploymentSection, load_settings
from cdl_gitlab.deploy.manifest import (
    ManifestError,
    check_image,
    render_manifest,
    resolve_image,
    seldon_deployment_names,
    validate_document,
)
from cdl_gitlab.deploy.memory import (
    MI,
    MemoryMeasurement,
    ServingMemoryError,
    memory_limit,
    memory_need,
    parse_quantity,
)

SHA = "3f2a9c1d0b4e5f60718293a4b5c6d7e8f9a0b1c2"
DIGEST = "registry.example.org/group/demo/news-demo@sha256:" + "ab" * 32


def test_render_staging_and_production(text_project) -> None:
    image = resolve_image(text_project, None, SHA)
    assert image == f"registry.example.org/group/demo/news-demo:{SHA}"
    for environment in ("staging", "production"):
        manifest = render_manifest(text_project, environment, image, model_version=3)
        doc = manifest.document
        assert doc["apiVersion"] == "machinelearning.seldon.io/v1"
        assert doc["kind"] == "SeldonDeployment"
        assert doc["metadata"]["name"] == f"news-demo-{environment}"
        assert doc["metadata"]["namespace"] == "demo-ns"
        assert doc["metadata"]["labels"]["cdl.dev/model-version"] == "3"
        predictor = doc["spec"]["predictors"][0]
        assert predictor["replicas"] == 2
        container = predictor["componentSpecs"][0]["spec"]["containers"][0]
        assert container["image"] == image
        assert container["resources"]["limits"] == {"cpu": "250m", "memory": "512Mi"}
        env = {item["name"]: item for item in container["env"]}
        assert env["CDL_SCORING_URL"]["valueFrom"]["secretKeyRef"] == {
            "name": "news-demo-scoring",
            "key": "CDL_SCORING_URL",
        }
        assert predictor["graph"]["endpoint"] == {"type": "REST"}
        assert predictor["graph"]["type"] == "MODEL"
    assert seldon_deployment_names(doc) == ["news-demo-production-default-0-classifier"]


@pytest.mark.parametrize(
    "image",
    [
        "registry.example.org/demo/news:latest",
        "registry.example.org/demo/news",
        "registry.example.org:5000/demo/news",
        "registry.example.org/demo/news:v1.2",
        "registry.example.org/demo/news:main",
        "registry.example.org/demo/news@sha256:1234",
    ],
)
def test_moving_or_missing_tags_are_refused(text_project, image: str) -> None:
    with pytest.raises(ManifestError, match=r"moving tag|digest|latest"):
        check_image(image)
    with pytest.raises(ManifestError):
        render_manifest(text_project, "staging", image)


def test_pinned_images_are_accepted(text_project, monkeypatch: pytest.MonkeyPatch) -> None:
    assert check_image(DIGEST) == DIGEST
    assert check_image(f"registry.example.org:5000/demo/news:{SHA[:8]}")
    with pytest.raises(ManifestError, match="not a commit SHA"):
        resolve_image(text_project, None, "latest")
    with pytest.raises(ManifestError, match="no image"):
        resolve_image(text_project, None, None)
    monkeypatch.setenv("CI_COMMIT_SHA", SHA)
    assert resolve_image(text_project, None, None).endswith(f":{SHA}")
    with pytest.raises(ManifestError, match="not both"):
        resolve_image(text_project, DIGEST, SHA)


def test_schema_rejects_broken_documents(text_project) -> None:
    good = render_manifest(text_project, "staging", DIGEST).document
    for mutate, expected in [
        (lambda d: d.update(kind="Deployment"), "kind"),
        (lambda d: d["metadata"].update(name="Not_Valid"), "metadata/name"),
        (lambda d: d["spec"].update(predictors=[]), "predictors"),
        (lambda d: d["spec"]["predictors"][0].update(replicas="two"), "replicas"),
        (lambda d: d["spec"]["predictors"][0]["graph"]["endpoint"].update(type="HTTP"), "type"),
    ]:
        doc = copy.deepcopy(good)
        mutate(doc)
        with pytest.raises(ManifestError, match=expected):
            validate_document(doc)


def test_inline_secrets_are_refused(text_project) -> None:
    doc = render_manifest(text_project, "staging", DIGEST).document
    container = doc["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][0]
    container["env"] = [{"name": "CDL_SCORING_URL", "value": "postgresql://u:hunter2@db/x"}]
    with pytest.raises(ManifestError, match="secretKeyRef"):
        validate_document(doc)


def test_cli_manifest_prints_no_secret(text_project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDL_TEST_POSTGRES_DSN", "postgresql://scorer:hunter2@db:5432/scoring")
    runner = CliRunner()
    app = AppContext(text_project.root / "cdl.yaml", "cluster")
    result = runner.invoke(deploy, ["manifest", "--env", "production", "--tag", SHA], obj=app)
    assert result.exit_code == 0, result.output
    doc = yaml.safe_load(result.output)
    assert doc["metadata"]["name"] == "news-demo-production"
    assert "hunter2" not in result.output and "scorer" not in result.output
    refused = runner.invoke(deploy, ["manifest", "--env", "staging", "--tag", "latest"], obj=app)
    assert refused.exit_code != 0 and "moving tags" in str(refused.exception)


def test_template_is_rendered_into_the_project(text_project) -> None:
    text = (text_project.root / "deployment" / "seldondeployment.yaml").read_text()
    assert "${image}" in text and "{{" not in text
    dockerfile = (text_project.root / "deployment" / "Dockerfile").read_text()
    assert "FROM python:3.11.11-slim-bookworm" in dockerfile
    assert "USER 8888" in dockerfile and "EXPOSE 9000 5000 6000" in dockerfile
    assert "HEALTHCHECK" in dockerfile and "/health/ping" in dockerfile
    assert 'CMD ["seldon-core-microservice", "NewsDemo", "--service-type", "MODEL"]' in dockerfile
    assert "torch==2.13.0" in dockerfile and "--constraints /tmp/constraints.txt" in dockerfile
    assert "install_cdl.py" in dockerfile and "ARG CDL_INDEX_URL" in dockerfile
    wrapper = (text_project.root / "deployment" / "NewsDemo.py").read_text()
    assert "class NewsDemo(CDLModel):" in wrapper
    compile(wrapper, "NewsDemo.py", "exec")


MEASURED = {
    "base_rss": 546 * MI,
    "worker_peak_rss": 606 * MI,
    "worker_private": 360 * MI,
    "requests": 3,
    "batch": 64,
}


def _container(doc: dict) -> dict:
    return doc["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][0]


def _with_config(settings, **deployment: str):
    """``settings`` with some ``deployment:`` keys of its cdl.yaml replaced."""
    config = settings.root / "cdl.yaml"
    text = config.read_text()
    for key, value in deployment.items():
        text = re.sub(rf"(?m)^  {key}: .*$", f"  {key}: {value}", text)
        if f"  {key}: {value}" not in text:
            text = text.replace("deployment:\n", f"deployment:\n  {key}: {value}\n", 1)
    config.write_text(text)
    return load_settings(config)


def test_probes_pull_secret_and_workers_are_rendered(text_project) -> None:
    doc = render_manifest(text_project, "staging", DIGEST).document
    pod = doc["spec"]["predictors"][0]["componentSpecs"][0]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "news-demo-registry"}]
    container = pod["containers"][0]
    readiness, liveness = container["readinessProbe"], container["livenessProbe"]
    assert readiness["httpGet"] == {"path": "/health/status", "port": "http"}
    assert liveness["httpGet"] == {"path": "/health/ping", "port": "http"}
    assert liveness["initialDelaySeconds"] >= 30 and liveness["failureThreshold"] >= 3
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["GUNICORN_WORKERS"] == "1" and env["GRPC_WORKERS"] == "0"
    config = text_project.root / "cdl.yaml"
    config.write_text(
        config.read_text().replace("cluster:\n", "cluster:\n  image_pull_secret: shared-pull\n", 1)
    )
    custom = _with_config(text_project, workers="3")
    doc = render_manifest(custom, "staging", DIGEST).document
    pod = doc["spec"]["predictors"][0]["componentSpecs"][0]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "shared-pull"}]
    assert {"name": "GUNICORN_WORKERS", "value": "3"} in pod["containers"][0]["env"]


def _drop(key: str):
    return lambda doc: _container(doc).pop(key)


def _tcp_readiness(doc: dict) -> None:
    _container(doc)["readinessProbe"] = {"tcpSocket": {"port": 9000}, "initialDelaySeconds": 20}


def _no_pull_secrets(doc: dict) -> None:
    doc["spec"]["predictors"][0]["componentSpecs"][0]["spec"].pop("imagePullSecrets")


def _workers(value: str):
    def mutate(doc: dict) -> None:
        for variable in _container(doc)["env"]:
            if variable["name"] == "GUNICORN_WORKERS":
                variable["value"] = value

    return mutate


def _memory(value: str):
    return lambda doc: _container(doc)["resources"]["limits"].update(memory=value)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_drop("readinessProbe"), "no readinessProbe"),
        (_tcp_readiness, "readinessProbe is a tcpSocket probe"),
        (_drop("livenessProbe"), "no livenessProbe"),
        (_no_pull_secrets, "no imagePullSecrets"),
        (_memory("512Mi"), "memory limit 512Mi is below the measured need of 954Mi"),
        (_workers("4"), "below the measured need of 2034Mi with 4 worker"),
    ],
    ids=["no-readiness", "tcp-readiness", "no-liveness", "no-pull-secret", "memory", "workers"],
)
def test_missing_serving_pieces_are_caught(text_project, mutate, expected: str) -> None:
    settings = _with_config(text_project, memory="auto")
    good = render_manifest(settings, "staging", DIGEST, serving_memory=MEASURED).document
    validate_document(good, MemoryMeasurement.from_dict(MEASURED))
    doc = copy.deepcopy(good)
    mutate(doc)
    with pytest.raises(ManifestError, match=re.escape(expected)):
        validate_document(doc, MemoryMeasurement.from_dict(MEASURED))


def _set(path: list, value):
    def mutate(doc: dict) -> None:
        node = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


CONTAINER = ["spec", "predictors", 0, "componentSpecs", 0, "spec", "containers", 0]
POD = ["spec", "predictors", 0, "componentSpecs", 0, "spec"]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_set([*CONTAINER, "readinesProbe"], {"httpGet": {"port": 1}}), "readinesProbe"),
        (_set([*CONTAINER, "resources", "claims"], [{"name": "gpu"}]), "claims"),
        (_set([*CONTAINER, "resources", "limits", "memory"], "1 GB"), "memory"),
        (_set([*CONTAINER, "readinessProbe", "httpGet"], {"path": "/health/status"}), "port"),
        (_set([*CONTAINER, "readinessProbe", "tcpSocket"], {"port": 9000}), "readinessProbe"),
        (_set([*CONTAINER, "readinessProbe", "periodSeconds"], "5"), "periodSeconds"),
        (_set([*CONTAINER, "env", 2, "value"], 1), "env/2"),
        (_set([*POD, "imagePullSecrets"], ["news-demo-registry"]), "imagePullSecrets/0"),
        (_set([*POD, "imagePullSecrets", 0, "secretName"], "x"), "secretName"),
        (_set([*POD, "nodeSelectors"], {"a": "b"}), "nodeSelectors"),
        (_set(["spec", "protocol"], "grpc"), "protocol"),
        (_set(["spec", "predictors", 0, "graph", "name"], "model"), "'model' has no container"),
        (_set(["spec", "predictors", 0, "traffic"], 50), "single predictor"),
        (
            lambda d: d["spec"]["predictors"].append(copy.deepcopy(d["spec"]["predictors"][0])),
            "duplicate predictor name",
        ),
        (_set(["spec", "predictors", 0, "graph", "endpoint", "port"], 9000), "port"),
        (_set(["metadata", "label"], {"a": "b"}), "label"),
        (_set([*CONTAINER, "resources", "limits", "Memory Size"], "1Gi"), "Memory Size"),
    ],
)
def test_linter_refuses_what_the_crd_refuses(text_project, mutate, expected: str) -> None:
    good = render_manifest(text_project, "staging", DIGEST).document
    doc = copy.deepcopy(good)
    mutate(doc)
    with pytest.raises(ManifestError, match=re.escape(expected)):
        validate_document(doc)


def test_accepted_pod_spec_additions(text_project) -> None:
    doc = render_manifest(text_project, "staging", DIGEST).document
    pod = doc["spec"]["predictors"][0]["componentSpecs"][0]["spec"]
    pod["nodeSelector"] = {"pool": "cpu"}
    pod["tolerations"] = [{"key": "k", "operator": "Exists"}]
    _container(doc)["resources"]["limits"]["memory"] = 2147483648  # a plain integer quantity
    _container(doc)["resources"]["limits"]["hugepages-2Mi"] = "64Mi"
    _container(doc)["startupProbe"] = {"httpGet": {"path": "/health/status", "port": 9000}}
    validate_document(doc)


def test_memory_auto_uses_the_measurement(text_project) -> None:
    settings = _with_config(text_project, memory="auto")
    assert settings.config.deployment.memory == "auto"
    with pytest.raises(ManifestError, match="no measured serving memory"):
        render_manifest(settings, "staging", DIGEST, model_version=1)
    doc = render_manifest(settings, "staging", DIGEST, serving_memory=MEASURED).document
    expected = memory_limit(MemoryMeasurement.from_dict(MEASURED), 1)
    assert expected == 1216 * MI  # (546 + 360 + 3 x 16) Mi x 1.25, rounded up to 64 Mi
    resources = _container(doc)["resources"]
    assert resources["limits"]["memory"] == resources["requests"]["memory"] == "1216Mi"
    two = _with_config(settings, workers="2")
    doc = render_manifest(two, "staging", DIGEST, serving_memory=MEASURED).document
    assert _container(doc)["resources"]["limits"]["memory"] == "1664Mi"
    explicit = _with_config(settings, memory="2Gi")
    doc = render_manifest(explicit, "staging", DIGEST, serving_memory=MEASURED).document
    assert _container(doc)["resources"]["limits"]["memory"] == "2Gi"  # an explicit value wins
    low = _with_config(settings, memory="1Gi", workers="2")
    with pytest.raises(ManifestError, match=r"1Gi is below .* 1314Mi measured"):
        render_manifest(low, "staging", DIGEST, model_version=4, serving_memory=MEASURED)
    with pytest.raises(ManifestError, match="malformed serving_memory"):
        render_manifest(settings, "staging", DIGEST, serving_memory={"base_rss": 1})


def test_memory_quantities_and_limits() -> None:
    assert parse_quantity("512Mi") == 512 * MI
    assert parse_quantity("1.5Gi") == 1536 * MI
    assert parse_quantity("1G") == 10**9 and parse_quantity("1000") == 1000
    for bad in ("1 GB", "lots", "-1Gi", "1gi"):
        with pytest.raises(ServingMemoryError, match="not a Kubernetes quantity"):
            parse_quantity(bad)
    measured = MemoryMeasurement.from_dict(MEASURED)
    assert memory_need(measured, 1) == (546 + 360 + 48) * MI
    assert memory_limit(measured, 1) % (64 * MI) == 0
    assert memory_limit(measured, 2) - memory_limit(measured, 1) >= 360 * MI
    with pytest.raises(ValidationError):
        _ = DeploymentSection(memory="1 GB")
    assert DeploymentSection().memory == "auto" and DeploymentSection().workers == 1
