"""SeldonDeployment manifests: rendered from the project template, schema-valid, pinned images."""

from __future__ import annotations

import copy

import pytest
import yaml
from click.testing import CliRunner

from cdl_gitlab.cli.app import AppContext
from cdl_gitlab.cli.deploy_cmd import deploy
from cdl_gitlab.deploy.manifest import (
    ManifestError,
    check_image,
    render_manifest,
    resolve_image,
    seldon_deployment_names,
    validate_document,
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
