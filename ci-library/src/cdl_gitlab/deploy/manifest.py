"""``cdl deploy manifest``: the SeldonDeployment of one environment, from the project's template.

The rendered project keeps ``deployment/seldondeployment.yaml`` (one source, editable); its
``${...}`` fields are filled here with JSON-quoted values, the result is parsed and validated
against ``cdl/schemas/seldondeployment-v1.json`` (the rules of Seldon Core 1.18's CRD and
webhook for what CDL renders, with the Kubernetes container fields) and the deployment rules
below:

- the image is pinned: ``repo@sha256:<digest>`` or a commit-SHA tag, never ``latest`` or another
  moving tag;
- no environment variable carries an inline value that looks like a secret (the scoring DSN
  comes from a Secret reference);
- every graph node has its container (the operator's webhook refuses one without), predictor
  names are unique and the traffic of several predictors sums to 100;
- every model container has an HTTP ``readinessProbe`` (the operator's default is a TCP probe,
  which passes before the model is loaded) and a ``livenessProbe``; every pod spec pulls with
  ``imagePullSecrets``;
- the memory limit covers what ``cdl deploy package`` measured for the version
  (:mod:`cdl_gitlab.deploy.memory`), for the container's ``GUNICORN_WORKERS``.
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

from cdl_gitlab.deploy.memory import METADATA_KEY as MEMORY_KEY
from cdl_gitlab.deploy.memory import (
    MemoryMeasurement,
    ServingMemoryError,
    format_quantity,
    memory_need,
    parse_quantity,
    resolve_memory,
)
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


def image_pull_secret_name(settings: Settings) -> str:
    """``cluster.image_pull_secret``, default ``<model name>-registry``."""
    return settings.config.cluster.image_pull_secret or f"{settings.config.model.name}-registry"


FEEDBACK_TOKEN_ENV = "CDL_FEEDBACK_TOKEN"
"""The feedback token's variable in the manifest when ``serving.feedback_token_env`` is unset."""


def load_schema() -> dict[str, Any]:
    text = resources.files("cdl_gitlab").joinpath("schemas", SCHEMA).read_text(encoding="utf-8")
    return json.loads(text)


def validate_document(document: Any, measurement: MemoryMeasurement | None = None) -> None:
    """ManifestError listing every schema violation (with its path), else the first rule break.

    ``measurement``: the version's measured serving memory, which every model container's
    memory limit must cover.
    """
    import jsonschema

    validator = jsonschema.Draft7Validator(load_schema())
    problems = [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(top)'}: {error.message}"
        for error in sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    ]
    if problems:
        raise ManifestError("invalid SeldonDeployment:\n  " + "\n  ".join(problems))
    check_webhook_rules(document["spec"])
    for predictor in document["spec"]["predictors"]:
        nodes = set(graph_node_names(predictor["graph"]))
        for component in predictor.get("componentSpecs", []):
            pod = component["spec"]
            if not pod.get("imagePullSecrets"):
                raise ManifestError(
                    f"predictor {predictor['name']}: the pod spec has no imagePullSecrets, so "
                    "the serving image cannot be pulled from a private registry (set "
                    "cluster.image_pull_secret, keep imagePullSecrets in the template)"
                )
            for container in pod["containers"]:
                check_image(container.get("image", ""))
                check_environment(container)
                if container["name"] in nodes:
                    check_probes(container)
                    if measurement is not None:
                        check_memory(container, measurement)


def graph_node_names(graph: dict[str, Any]) -> list[str]:
    names = [graph["name"]]
    for child in graph.get("children", []):
        names.extend(graph_node_names(child))
    return names


def _graph_nodes(graph: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = [graph]
    for child in graph.get("children", []):
        nodes.extend(_graph_nodes(child))
    return nodes


def check_webhook_rules(spec: dict[str, Any]) -> None:
    """The Seldon operator's admission rules for what CDL renders (ManifestError)."""
    names = [predictor["name"] for predictor in spec["predictors"]]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ManifestError(f"duplicate predictor name {duplicates[0]!r}")
    for predictor in spec["predictors"]:
        containers = {
            container["name"]
            for component in predictor.get("componentSpecs", [])
            for container in component["spec"]["containers"]
        }
        for node in _graph_nodes(predictor["graph"]):
            implemented = node.get("implementation") not in (None, "UNKNOWN_IMPLEMENTATION")
            if not implemented and node["name"] not in containers:
                raise ManifestError(
                    f"predictor {predictor['name']}: graph node {node['name']!r} has no "
                    "container of that name in componentSpecs (the operator refuses it)"
                )
    serving = [p for p in spec["predictors"] if not p.get("shadow")]
    traffic = sum(int(p.get("traffic", 0)) for p in serving)
    if len(serving) > 1 and traffic != 100:
        raise ManifestError(f"the traffic of the predictors sums to {traffic}, not 100")
    if len(spec["predictors"]) == 1 and 0 < traffic < 100:
        raise ManifestError(f"the traffic of a single predictor must be 100 when set ({traffic})")


def check_environment(container: dict[str, Any]) -> None:
    for variable in container.get("env", []):
        value = variable.get("value", "")
        if SECRET_HINTS.search(variable["name"] + " " + value) and "value" in variable:
            raise ManifestError(
                f"container {container['name']}: environment variable "
                f"{variable['name']} has an inline value that looks like a secret; "
                "use valueFrom.secretKeyRef"
            )


def check_probes(container: dict[str, Any]) -> None:
    """An HTTP readiness probe (on the model's health route) and a liveness probe."""
    name = container["name"]
    readiness = container.get("readinessProbe")
    if not readiness:
        raise ManifestError(
            f"container {name}: no readinessProbe; the Seldon operator would add a TCP probe, "
            "which passes while the model is still loading: probe httpGet /health/status"
        )
    if "httpGet" not in readiness:
        handler = next(iter(k for k in ("tcpSocket", "exec", "grpc") if k in readiness), "?")
        raise ManifestError(
            f"container {name}: the readinessProbe is a {handler} probe; a pod must become "
            "ready only once the model is loaded: probe httpGet /health/status"
        )
    if not container.get("livenessProbe"):
        raise ManifestError(
            f"container {name}: no livenessProbe (a hung server would never be restarted): "
            "probe httpGet /health/ping after the model's load time"
        )


def container_workers(container: dict[str, Any]) -> int:
    """The container's gunicorn REST workers: ``GUNICORN_WORKERS``, else Seldon's default 1."""
    for variable in container.get("env", []):
        if variable["name"] == "GUNICORN_WORKERS":
            try:
                return max(1, int(variable.get("value", "1")))
            except ValueError:
                raise ManifestError(
                    f"container {container['name']}: GUNICORN_WORKERS "
                    f"{variable.get('value')!r} is not a number"
                ) from None
    return 1


def check_memory(container: dict[str, Any], measurement: MemoryMeasurement) -> None:
    """The container's memory limit covers the measured need for its workers."""
    resources = container.get("resources", {})
    limit = resources.get("limits", {}).get("memory")
    workers = container_workers(container)
    need = memory_need(measurement, workers)
    if limit is None:
        raise ManifestError(
            f"container {container['name']}: no memory limit; the model needs "
            f"{format_quantity(need)} with {workers} worker(s) (deployment.memory: auto)"
        )
    try:
        size = parse_quantity(str(limit))
    except ServingMemoryError as exc:
        raise ManifestError(f"container {container['name']}: {exc}") from None
    if size < need:
        raise ManifestError(
            f"container {container['name']}: memory limit {limit} is below the measured need "
            f"of {format_quantity(need)} with {workers} worker(s); the pods would be OOM-killed "
            "(use deployment.memory: auto or a larger quantity)"
        )


def render_manifest(
    settings: Settings,
    environment: str,
    image: str,
    model_version: int | None = None,
    template: Path | None = None,
    serving_memory: Any = None,
) -> Manifest:
    """Fill the project's SeldonDeployment template for ``environment`` and validate it.

    ``serving_memory``: the version's ``serving_memory`` record (registry metadata), needed
    when ``deployment.memory`` is ``auto`` and checked against an explicit value.
    """
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
    try:
        measurement = (
            MemoryMeasurement.from_dict(serving_memory) if serving_memory is not None else None
        )
        memory = resolve_memory(deployment.memory, measurement, deployment.workers)
    except ServingMemoryError as exc:
        version = f" v{model_version}" if model_version is not None else ""
        raise ManifestError(f"{settings.config.model.name}{version}: {exc}") from None
    values = {
        "name": deployment_name(settings, environment),
        "namespace": settings.config.cluster.namespace,
        "environment": environment,
        "model_version": str(model_version) if model_version is not None else "unknown",
        "replicas": deployment.replicas,
        "image": check_image(image),
        "cpu": deployment.cpu,
        "memory": memory,
        "workers": str(deployment.workers),
        "image_pull_secret": image_pull_secret_name(settings),
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
    validate_document(document, measurement)
    return Manifest(text=text, document=document, environment=environment, image=image)


def serving_memory_of(metadata: dict[str, Any] | None) -> Any:
    """The ``serving_memory`` record of a registry version's metadata (None if unmeasured)."""
    return (metadata or {}).get(MEMORY_KEY)


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
