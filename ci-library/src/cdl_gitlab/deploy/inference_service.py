"""The KServe ``InferenceService`` (serving.kserve.io/v1beta1) of ``serving.engine: mlserver``.

One custom predictor container: the project's serving image (MLServer with the CDL runtime,
``deployment/Dockerfile`` rendered for the mlserver engine), pinned the way the
SeldonDeployment's image is (:func:`cdl_gitlab.deploy.manifest.check_image`: a digest or a
commit-SHA tag). Built from ``cdl.yaml`` here rather than from a template: namespace,
replicas, cpu/memory (requests = limits), the scoring Secret, the feedback token variable,
the registry pull Secret, readiness on the V2 model-ready route and liveness on
``/v2/health/live``.

:func:`validate_inference_service` checks the rules of KServe's CRD and of Kubernetes that
apply to this document (written here from the CRD's field definitions):

- ``apiVersion: serving.kserve.io/v1beta1``, ``kind: InferenceService``; ``metadata.name`` a
  DNS-1035 label of at most 63 characters (KServe derives Service names from it), namespace a
  DNS-1123 label;
- ``spec.predictor`` is required and, with custom ``containers``, holds exactly one container
  (KServe's predictor validation refuses more for a non-transformer predictor) with a name,
  a pinned image, container ports named ``http1`` / ``h2c`` (Knative's names);
- ``minReplicas`` <= ``maxReplicas``, both >= 0;
- resources: requests and limits with cpu and memory in Kubernetes quantity syntax;
- probes: an ``httpGet`` with a path starting with ``/`` and a port;
- no inline environment value that looks like a secret.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import yaml

from cdl_gitlab.deploy.manifest import (
    ENVIRONMENTS,
    FEEDBACK_TOKEN_ENV,
    SECRET_HINTS,
    Manifest,
    ManifestError,
    check_image,
    deployment_name,
    image_pull_secret_name,
    scoring_secret_name,
)
from cdl_gitlab.deploy.memory import MemoryMeasurement, ServingMemoryError, resolve_memory

if TYPE_CHECKING:
    from cdl_gitlab.config import Settings

API_VERSION = "serving.kserve.io/v1beta1"
KIND = "InferenceService"
HTTP_PORT = 8080
"""MLServer's REST port in the container (its default)."""
GRPC_PORT = 8081

_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
_PORT_NAMES = frozenset({"http1", "h2c"})


def build_inference_service(
    settings: Settings,
    environment: str,
    image: str,
    model_version: int | None = None,
    serving_memory: Any = None,
) -> dict[str, Any]:
    """The InferenceService document of ``environment`` (not yet validated).

    Memory as for the SeldonDeployment (``deployment.memory``, ``auto`` from the version's
    measured ``serving_memory``), for one model copy: MLServer runs the runtime in its main
    process (``parallel_workers: 0``), so the need is the server plus one worker's private
    memory of the measurement.
    """
    if environment not in ENVIRONMENTS:
        raise ManifestError(f"unknown environment {environment!r} (staging or production)")
    config = settings.config
    deployment = config.deployment
    name = deployment_name(settings, environment)
    model = config.model.name
    token_env = config.serving.feedback_token_env or FEEDBACK_TOKEN_ENV
    secret = scoring_secret_name(settings)
    try:
        measurement = (
            MemoryMeasurement.from_dict(serving_memory) if serving_memory is not None else None
        )
        memory = resolve_memory(deployment.memory, measurement, workers=1)
    except ServingMemoryError as exc:
        version = f" v{model_version}" if model_version is not None else ""
        raise ManifestError(f"{model}{version}: {exc}") from None
    resources = {"cpu": deployment.cpu, "memory": memory}
    labels = {
        "app.kubernetes.io/name": model,
        "app.kubernetes.io/managed-by": "cdl",
        "cdl.dev/environment": environment,
        "cdl.dev/model-version": str(model_version) if model_version is not None else "unknown",
    }
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": config.cluster.namespace, "labels": labels},
        "spec": {
            "predictor": {
                "minReplicas": deployment.replicas,
                "maxReplicas": deployment.replicas,
                "imagePullSecrets": [{"name": image_pull_secret_name(settings)}],
                "containers": [
                    {
                        "name": "kserve-container",
                        "image": check_image(image),
                        "imagePullPolicy": "IfNotPresent",
                        "ports": [{"name": "http1", "containerPort": HTTP_PORT, "protocol": "TCP"}],
                        "env": [
                            {"name": "MLSERVER_HTTP_PORT", "value": str(HTTP_PORT)},
                            {"name": "MLSERVER_GRPC_PORT", "value": str(GRPC_PORT)},
                            {
                                "name": "CDL_SCORING_URL",
                                "valueFrom": {
                                    "secretKeyRef": {"name": secret, "key": "CDL_SCORING_URL"}
                                },
                            },
                            {
                                "name": token_env,
                                "valueFrom": {
                                    "secretKeyRef": {
                                        "name": secret,
                                        "key": token_env,
                                        "optional": True,
                                    }
                                },
                            },
                        ],
                        "readinessProbe": {
                            "httpGet": {"path": f"/v2/models/{model}/ready", "port": HTTP_PORT},
                            "initialDelaySeconds": 5,
                            "periodSeconds": 5,
                            "failureThreshold": 3,
                        },
                        "livenessProbe": {
                            "httpGet": {"path": "/v2/health/live", "port": HTTP_PORT},
                            "initialDelaySeconds": 30,
                            "periodSeconds": 10,
                            "failureThreshold": 3,
                        },
                        "resources": {"requests": dict(resources), "limits": dict(resources)},
                    }
                ],
            }
        },
    }


def validate_inference_service(document: Any) -> None:
    """ManifestError listing every broken rule (see the module docstring)."""
    problems: list[str] = []

    def need(condition: bool, where: str, message: str) -> None:
        if not condition:
            problems.append(f"{where}: {message}")

    if not isinstance(document, dict):
        raise ManifestError("invalid InferenceService: not a mapping")
    need(document.get("apiVersion") == API_VERSION, "apiVersion", f"must be {API_VERSION}")
    need(document.get("kind") == KIND, "kind", f"must be {KIND}")
    metadata = document.get("metadata") or {}
    name = str(metadata.get("name", ""))
    need(
        bool(_DNS_1035.match(name)) and len(name) <= 63,
        "metadata/name",
        f"{name!r} is not a DNS-1035 label of at most 63 characters",
    )
    namespace = str(metadata.get("namespace", ""))
    need(
        bool(_DNS_1123.match(namespace)) and len(namespace) <= 63,
        "metadata/namespace",
        f"{namespace!r} is not a DNS-1123 label",
    )
    predictor = (document.get("spec") or {}).get("predictor")
    if not isinstance(predictor, dict):
        problems.append("spec/predictor: required")
        raise ManifestError("invalid InferenceService:\n  " + "\n  ".join(problems))
    low, high = predictor.get("minReplicas", 1), predictor.get("maxReplicas", 0)
    need(isinstance(low, int) and low >= 0, "spec/predictor/minReplicas", "must be >= 0")
    need(isinstance(high, int) and high >= 0, "spec/predictor/maxReplicas", "must be >= 0")
    if isinstance(low, int) and isinstance(high, int) and high:
        need(low <= high, "spec/predictor", "minReplicas must not exceed maxReplicas")
    for index, secret in enumerate(predictor.get("imagePullSecrets", [])):
        need(
            isinstance(secret, dict) and bool(secret.get("name")),
            f"spec/predictor/imagePullSecrets/{index}",
            "needs a name",
        )
    containers = predictor.get("containers")
    need(
        isinstance(containers, list) and len(containers) == 1,
        "spec/predictor/containers",
        "a custom predictor has exactly one container",
    )
    for index, container in enumerate(containers or []):
        where = f"spec/predictor/containers/{index}"
        problems.extend(_container_problems(container, where))
    if problems:
        raise ManifestError("invalid InferenceService:\n  " + "\n  ".join(problems))


def _container_problems(container: Any, where: str) -> list[str]:
    problems: list[str] = []
    if not isinstance(container, dict):
        return [f"{where}: not a mapping"]
    if not container.get("name"):
        problems.append(f"{where}/name: required")
    try:
        check_image(str(container.get("image", "")))
    except ManifestError as exc:
        problems.append(f"{where}/image: {exc}")
    for port in container.get("ports", []):
        if port.get("name") not in _PORT_NAMES:
            problems.append(f"{where}/ports: name {port.get('name')!r} is not http1 or h2c")
        if not isinstance(port.get("containerPort"), int) or not 0 < port["containerPort"] < 65536:
            problems.append(f"{where}/ports: containerPort must be 1..65535")
    resources = container.get("resources") or {}
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            value = str((resources.get(kind) or {}).get(resource, ""))
            if not _QUANTITY.match(value):
                problems.append(f"{where}/resources/{kind}/{resource}: {value!r} is not a quantity")
    for probe_name in ("readinessProbe", "livenessProbe"):
        probe = container.get(probe_name)
        get = probe.get("httpGet") if isinstance(probe, dict) else None
        if not isinstance(get, dict):
            problems.append(f"{where}/{probe_name}: an httpGet probe is required")
            continue
        if not str(get.get("path", "")).startswith("/") or "port" not in get:
            problems.append(f"{where}/{probe_name}/httpGet: needs a path (/...) and a port")
    for variable in container.get("env", []):
        if "value" in variable and SECRET_HINTS.search(
            f"{variable.get('name', '')} {variable['value']}"
        ):
            problems.append(
                f"{where}/env/{variable.get('name')}: an inline value that looks like a "
                "secret; use valueFrom.secretKeyRef"
            )
    return problems


def render_inference_service(
    settings: Settings,
    environment: str,
    image: str,
    model_version: int | None = None,
    serving_memory: Any = None,
) -> Manifest:
    """The validated InferenceService of ``environment`` as a :class:`Manifest`."""
    document = build_inference_service(settings, environment, image, model_version, serving_memory)
    validate_inference_service(document)
    text = (
        f"# KServe InferenceService of {settings.config.model.name} ({environment}): MLServer "
        "with the CDL runtime.\n# Rendered by `cdl deploy manifest` from cdl.yaml.\n"
        + yaml.safe_dump(document, sort_keys=False)
    )
    return Manifest(text=text, document=document, environment=environment, image=image)
