"""``cdl deploy manifest``: the SeldonDeployment of one environment, from the project's template.

The rendered project keeps ``deployment/seldondeployment.yaml`` (one source, editable); its
``${...}`` fields are filled here with JSON-quoted values, the result is parsed and validated
against ``cdl/schemas/seldondeployment-v1.json`` and the deployment rules below:

- the image is pinned: ``repo@sha256:<digest>`` or a commit-SHA tag, never ``latest`` or another
  moving tag;
- no environment variable carries an inline value that looks like a secret (the scoring DSN
  comes from a Secret reference).
"""

from __future__ import annotations

import json
import os
import re
import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from cdl_gitlab.errors import CDLError

if TYPE_CHECKING:
    from cdl_gitlab.config import Settings

TEMPLATE = "deployment/seldondeployment.yaml"
SCHEMA = "seldondeployment-v1.json"
ENVIRONMENTS = ("staging", "production")
"""The environments; the branch each deploys from is configuration (``Settings.deploy_branch``)."""

DIGEST = re.compile(r"^(?P<repo>[^@\s]+)@sha256:[0-9a-f]{64}$")
SHA_TAG = re.compile(r"^[0-9a-f]{7,40}$")
SECRET_HINTS = re.compile(r"(://[^/\s:@]+:[^@\s]+@)|password|secret|token", re.IGNORECASE)


class ManifestError(CDLError):
    """The manifest cannot be rendered, or breaks a deployment rule."""


@dataclass(frozen=True)
class Manifest:
    """A rendered, validated SeldonDeployment."""

    text: str
    document: dict[str, Any]
    environment: str
    image: str

    @property
    def name(self) -> str:
        return str(self.document["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.document["metadata"]["namespace"])


def image_repository(settings: Settings) -> str:
    """``<image_prefix or $CI_REGISTRY_IMAGE>/<model name>``: where the serving image lives."""
    prefix = settings.config.cluster.image_prefix or os.environ.get("CI_REGISTRY_IMAGE", "")
    if not prefix:
        raise ManifestError(
            "no image registry: set cluster.image_prefix in cdl.yaml (or $CI_REGISTRY_IMAGE), "
            "or pass the full --image <repo>@sha256:<digest>"
        )
    return f"{prefix.rstrip('/')}/{settings.config.model.name}"


def check_image(image: str) -> str:
    """``image`` if it is pinned by digest or a commit-SHA tag, else ManifestError."""
    if DIGEST.match(image):
        return image
    last = image.rsplit("/", 1)[-1]
    if "@" in image:
        raise ManifestError(f"image {image!r}: a digest must be sha256:<64 hex digits>")
    if ":" not in last:
        raise ManifestError(
            f"image {image!r} has no tag, which means 'latest' (a moving tag): pin it by "
            "digest (<repo>@sha256:...) or by commit SHA (--tag <sha>)"
        )
    tag = last.rsplit(":", 1)[1]
    if not SHA_TAG.match(tag):
        raise ManifestError(
            f"image tag {tag!r} is a moving tag: deploy by digest (<repo>@sha256:...) or by a "
            "commit-SHA tag (7 to 40 lowercase hex digits)"
        )
    return image


def resolve_image(settings: Settings, image: str | None, tag: str | None) -> str:
    """The pinned image from ``--image``, ``--tag`` or ``$CI_COMMIT_SHA``."""
    if image and tag:
        raise ManifestError("give either --image or --tag, not both")
    if image:
        return check_image(image)
    tag = tag or os.environ.get("CI_COMMIT_SHA")
    if not tag:
        raise ManifestError(
            "no image: pass --image <repo>@sha256:<digest> or --tag <commit sha> "
            "(CI jobs use $CI_COMMIT_SHA)"
        )
    if not SHA_TAG.match(tag):
        raise ManifestError(
            f"--tag {tag!r} is not a commit SHA (7 to 40 lowercase hex digits): moving tags "
            "such as 'latest' are refused"
        )
    return f"{image_repository(settings)}:{tag}"


def deployment_name(settings: Settings, environment: str) -> str:
    return f"{settings.config.model.name}-{environment}"


def scoring_secret_name(settings: Settings) -> str:
    return f"{settings.config.model.name}-scoring"


FEEDBACK_TOKEN_ENV = "CDL_FEEDBACK_TOKEN"
"""The feedback token's variable in the manifest when ``serving.feedback_token_env`` is unset."""


def load_schema() -> dict[str, Any]:
    text = resources.files("cdl_gitlab").joinpath("schemas", SCHEMA).read_text(encoding="utf-8")
    return json.loads(text)


def validate_document(document: Any) -> None:
    """ManifestError listing every schema violation (with its path) and rule break."""
    import jsonschema

    validator = jsonschema.Draft7Validator(load_schema())
    problems = [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(top)'}: {error.message}"
        for error in sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    ]
    if problems:
        raise ManifestError("invalid SeldonDeployment:\n  " + "\n  ".join(problems))
    for predictor in document["spec"]["predictors"]:
        for component in predictor.get("componentSpecs", []):
            for container in component["spec"]["containers"]:
                check_image(container["image"])
                for variable in container.get("env", []):
                    value = variable.get("value", "")
                    if SECRET_HINTS.search(variable["name"] + " " + value) and "value" in variable:
                        raise ManifestError(
                            f"container {container['name']}: environment variable "
                            f"{variable['name']} has an inline value that looks like a secret; "
                            "use valueFrom.secretKeyRef"
                        )


def render_manifest(
    settings: Settings,
    environment: str,
    image: str,
    model_version: int | None = None,
    template: Path | None = None,
) -> Manifest:
    """Fill the project's SeldonDeployment template for ``environment`` and validate it."""
    if environment not in ENVIRONMENTS:
        raise ManifestError(f"unknown environment {environment!r} (staging or production)")
    path = template or settings.root / TEMPLATE
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(
            f"{path} is missing: it is rendered by the CDL template (run `copier update`)"
        ) from None
    deployment = settings.config.deployment
    values = {
        "name": deployment_name(settings, environment),
        "namespace": settings.config.cluster.namespace,
        "environment": environment,
        "model_version": str(model_version) if model_version is not None else "unknown",
        "replicas": deployment.replicas,
        "image": check_image(image),
        "cpu": deployment.cpu,
        "memory": deployment.memory,
        "scoring_secret": scoring_secret_name(settings),
        "feedback_token_env": settings.config.serving.feedback_token_env or FEEDBACK_TOKEN_ENV,
    }
    try:
        text = string.Template(source).substitute({k: json.dumps(v) for k, v in values.items()})
    except (KeyError, ValueError) as exc:
        raise ManifestError(f"{path}: unknown or malformed placeholder {exc}") from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: the filled template is not valid YAML: {exc}") from exc
    validate_document(document)
    return Manifest(text=text, document=document, environment=environment, image=image)


def seldon_deployment_names(document: dict[str, Any]) -> list[str]:
    """The Kubernetes Deployments the Seldon operator creates for ``document``.

    Seldon Core 1.x names them ``<sdep>-<predictor>-<index>-<container names joined by ->``
    unless the component spec sets ``metadata.name``.
    """
    names = []
    sdep = document["metadata"]["name"]
    for predictor in document["spec"]["predictors"]:
        for index, component in enumerate(predictor.get("componentSpecs", [])):
            explicit = (component.get("metadata") or {}).get("name")
            containers = "-".join(c["name"] for c in component["spec"]["containers"])
            name = explicit or f"{sdep}-{predictor['name']}-{index}-{containers}"
            if len(name) > 63:
                raise ManifestError(
                    f"Deployment name {name!r} exceeds 63 characters (Seldon would hash it): "
                    "set componentSpecs[].metadata.name in deployment/seldondeployment.yaml"
                )
            names.append(name)
    return names
