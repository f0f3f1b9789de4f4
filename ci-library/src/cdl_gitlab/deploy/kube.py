"""``cdl deploy apply`` / ``rollback``: the SeldonDeployment (``serving.engine: seldon``) or the
KServe InferenceService (``serving.engine: mlserver``) on Kubernetes through ``kubectl``.

kubectl runs through ``cdl_gitlab.kubectl``: the kubeconfig comes from ``$KUBECONFIG`` (a path)
or ``$KUBECONFIG_B64`` (a masked CI/CD variable, decoded into a private temporary file). The
scoring DSN goes into a Secret through ``kubectl``'s standard input, never its arguments. So
does the image pull secret (``cluster.image_pull_secret``, default ``<model>-registry``, a
``kubernetes.io/dockerconfigjson`` Secret for the image's registry), created or updated from
GitLab's deploy token ``$CI_DEPLOY_USER`` / ``$CI_DEPLOY_PASSWORD`` (a project deploy token
named ``gitlab-deploy-token`` with ``read_registry``); without it, the Secret must already exist
in the namespace. The job token (``$CI_REGISTRY_PASSWORD``) is never used: it expires with the
job, so a pod rescheduled later could not pull. None of these is ever printed: every line of
``kubectl`` output shown to the user is scrubbed of them.

A SeldonDeployment is ready when the Deployments its operator creates have rolled out; an
InferenceService when KServe sets its ``Ready`` condition (``kubectl wait``), both within
``deployment.rollout_timeout``. Each apply records
``deployments.<env> = {image, at, namespace, name, kind}`` on the model version; ``rollback``
re-applies the previously recorded version (the same kind of resource only) and retires the
current record.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdl_gitlab.deploy.inference_service import KIND as INFERENCE_SERVICE
from cdl_gitlab.deploy.inference_service import render_inference_service
from cdl_gitlab.deploy.manifest import (
    Manifest,
    ManifestError,
    image_pull_secret_name,
    render_manifest,
    scoring_secret_name,
    seldon_deployment_names,
    serving_memory_of,
)
from cdl_gitlab.kubectl import Kubectl, KubeError, ensure_pull_secret, managed_secret
from cdl_gitlab.scoring import SCORING_URL_ENV, normalize_url

if TYPE_CHECKING:
    from cdl_gitlab.config import Settings

log = logging.getLogger(__name__)

APPEAR_POLL = 2.0


@dataclass
class Deployed:
    """The outcome of an apply or a rollback."""

    environment: str
    version: int
    image: str
    namespace: str
    name: str
    output: list[str]


def current_branch(root: Path) -> str | None:
    """The branch being deployed: GitLab's variables, else git's checked-out branch."""
    for variable in ("CI_COMMIT_BRANCH", "CI_COMMIT_REF_NAME"):
        if os.environ.get(variable):
            return os.environ[variable]
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--abbrev-ref", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    branch = result.stdout.strip()
    return branch if branch and branch != "HEAD" else None


def check_branch(settings: Settings, environment: str) -> None:
    """Production deploys only from the production branch (``$CDL_PRODUCTION_BRANCH``);
    staging from any branch."""
    if environment != "production":
        return
    expected = settings.deploy_branch("production")
    if not expected:
        raise KubeError(
            "production deploys need CDL_PRODUCTION_BRANCH, the branch production deploys "
            "from (the deployment component sets it from its production_branch input)"
        )
    branch = current_branch(settings.root)
    if branch != expected:
        raise KubeError(
            f"production deploys only from the {expected} branch (this is "
            f"{branch or 'an unknown'} branch); deploy to staging from "
            f"{settings.deploy_branch('staging') or 'the staging branch'}"
        )


def secret_manifest(name: str, namespace: str, scoring_url: str) -> str:
    """The Secret holding the scoring store URL."""
    return managed_secret(name, namespace, "Opaque", {"stringData": {SCORING_URL_ENV: scoring_url}})


SELDON_DEPLOYMENT = "SeldonDeployment"


def render_for_engine(
    settings: Settings,
    environment: str,
    image: str,
    model_version: int | None = None,
    serving_memory: Any = None,
) -> Manifest:
    """The manifest of ``serving.engine``: the SeldonDeployment, or the InferenceService."""
    render = (
        render_inference_service
        if settings.config.serving.engine == "mlserver"
        else render_manifest
    )
    return render(
        settings,
        environment,
        image,
        model_version=model_version,
        serving_memory=serving_memory,
    )


def manifest_kind(manifest: Manifest) -> str:
    return str(manifest.document.get("kind", SELDON_DEPLOYMENT))


def pull_secret_names(document: dict[str, Any]) -> list[str]:
    """The image pull secrets the manifest's pod specs name, in order, without repeats."""
    if document.get("kind") == INFERENCE_SERVICE:
        predictor = document["spec"]["predictor"]
        return list(dict.fromkeys(item["name"] for item in predictor.get("imagePullSecrets", [])))
    names: list[str] = []
    for predictor in document["spec"]["predictors"]:
        for component in predictor.get("componentSpecs", []):
            for item in component["spec"].get("imagePullSecrets", []):
                if item["name"] not in names:
                    names.append(item["name"])
    return names


def ensure_pull_secrets(kubectl: Kubectl, settings: Settings, manifest: Manifest) -> list[str]:
    """Create or update the configured pull secret from the deploy token; check the others
    (and the configured one when there is no deploy token) exist."""
    namespace = manifest.namespace
    managed = image_pull_secret_name(settings)
    output = []
    for name in pull_secret_names(manifest.document):
        if name == managed:
            output.append(
                ensure_pull_secret(kubectl, name, namespace, manifest.image, "`cdl deploy apply`")
            )
        elif not kubectl.secret_exists(name, namespace):
            raise KubeError(
                f"the image pull secret {name} does not exist in namespace {namespace}: "
                "create it (kubectl create secret docker-registry) or remove it from "
                "deployment/seldondeployment.yaml"
            )
    return output


def _wait_for_deployment(kubectl: Kubectl, name: str, namespace: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        found = kubectl.run(
            ["get", "deployment", name, "-n", namespace, "--ignore-not-found", "-o", "name"]
        )
        if found:
            return
        if time.monotonic() >= deadline:
            raise KubeError(
                f"the Seldon operator did not create deployment {name} in {namespace} within "
                f"{timeout:.0f} s (is the operator installed? `kubectl describe sdep`)"
            )
        time.sleep(APPEAR_POLL)


def _wait_for_inference_service(kubectl: Kubectl, name: str, namespace: str, timeout: float) -> str:
    """``kubectl wait`` for KServe's ``Ready`` condition of the InferenceService."""
    try:
        return kubectl.run(
            [
                "wait",
                "--for=condition=Ready",
                f"inferenceservice/{name}",
                "-n",
                namespace,
                f"--timeout={timeout:.0f}s",
            ]
        )
    except KubeError as exc:
        raise KubeError(
            f"InferenceService {name} in {namespace} did not become Ready within "
            f"{timeout:.0f} s (deployment.rollout_timeout): {exc} (see `kubectl describe "
            f"inferenceservice {name} -n {namespace}` and the predictor pod's events)"
        ) from None


def _apply_resource(kubectl: Kubectl, manifest: Manifest) -> str:
    """``kubectl apply`` of the manifest; a missing CRD gets a hint of what to install."""
    try:
        return kubectl.run(["apply", "-f", "-"], stdin=manifest.text)
    except KubeError as exc:
        if "no matches for kind" not in str(exc):
            raise
        operator = (
            "KServe (serving.kserve.io)"
            if manifest_kind(manifest) == INFERENCE_SERVICE
            else "Seldon Core 1.x (machinelearning.seldon.io)"
        )
        raise KubeError(
            f"the cluster does not know kind {manifest_kind(manifest)}: is {operator} "
            f"installed? (serving.engine in cdl.yaml picks the kind) - {exc}"
        ) from None


def apply_manifest(settings: Settings, manifest: Manifest) -> list[str]:
    """Apply the scoring Secret and ``manifest``; wait until it serves: every Deployment of a
    SeldonDeployment rolled out, or the InferenceService Ready."""
    env_name = settings.config.cluster.postgres_dsn_env
    dsn = normalize_url(settings.secret(env_name, "the scoring data store of the deployment"))
    timeout = settings.config.deployment.rollout_timeout
    kubectl = Kubectl(secrets=[dsn, os.environ.get(env_name, "")], timeout=timeout + 60)
    namespace = manifest.namespace
    output: list[str] = []
    with kubectl.session():
        output.append(
            kubectl.run(
                ["apply", "-f", "-"],
                stdin=secret_manifest(scoring_secret_name(settings), namespace, dsn),
            )
        )
        output.extend(ensure_pull_secrets(kubectl, settings, manifest))
        output.append(_apply_resource(kubectl, manifest))
        if manifest_kind(manifest) == INFERENCE_SERVICE:
            output.append(_wait_for_inference_service(kubectl, manifest.name, namespace, timeout))
            return [line for line in output if line]
        for name in seldon_deployment_names(manifest.document):
            _wait_for_deployment(kubectl, name, namespace, timeout)
            output.append(
                kubectl.run(
                    [
                        "rollout",
                        "status",
                        f"deployment/{name}",
                        "-n",
                        namespace,
                        f"--timeout={timeout}s",
                    ]
                )
            )
    return [line for line in output if line]


def _record(
    registry: Any, name: str, version: int, environment: str, entry: dict[str, Any] | None
) -> None:
    registry.add_metadata(name, version, {"deployments": {environment: entry}}, overwrite=True)


def deployment_entry(manifest: Manifest) -> dict[str, Any]:
    return {
        "image": manifest.image,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "namespace": manifest.namespace,
        "name": manifest.name,
        "kind": manifest_kind(manifest),
    }


def apply(
    settings: Settings,
    registry: Any,
    environment: str,
    image: str,
    version: int | None = None,
    applier: Callable[[Any, Manifest], list[str]] = apply_manifest,
) -> Deployed:
    """Deploy ``version`` (default: latest) in ``image`` to ``environment`` and record it."""
    check_branch(settings, environment)
    name = settings.config.model.name
    found = registry.get_version(name, version)
    manifest = render_for_engine(
        settings,
        environment,
        image,
        model_version=found.version,
        serving_memory=serving_memory_of(found.metadata),
    )
    output = applier(settings, manifest)
    _record(registry, name, found.version, environment, deployment_entry(manifest))
    return Deployed(environment, found.version, image, manifest.namespace, manifest.name, output)


def deployment_history(registry: Any, name: str, environment: str) -> list[tuple[int, dict]]:
    """``(version, record)`` of the active deployments of ``environment``, oldest first."""
    active = []
    for found in registry.list_versions(name):
        record = (found.metadata.get("deployments") or {}).get(environment)
        if isinstance(record, dict) and record.get("image") and record.get("at"):
            active.append((found.version, record))
    return sorted(active, key=lambda item: item[1]["at"])


def rollback(
    settings: Settings,
    registry: Any,
    environment: str,
    applier: Callable[[Any, Manifest], list[str]] = apply_manifest,
) -> Deployed:
    """Re-deploy the version deployed to ``environment`` before the current one."""
    check_branch(settings, environment)
    name = settings.config.model.name
    history = deployment_history(registry, name, environment)
    if len(history) < 2:
        raise KubeError(
            f"no earlier deployment of {name} to {environment} is recorded: nothing to roll back to"
        )
    current_version, current = history[-1]
    previous_version, previous = history[-2]
    engine = settings.config.serving.engine
    kind = INFERENCE_SERVICE if engine == "mlserver" else SELDON_DEPLOYMENT
    recorded = previous.get("kind", SELDON_DEPLOYMENT)
    if recorded != kind:
        raise KubeError(
            f"{name} v{previous_version} was deployed to {environment} as a {recorded}, and "
            f"serving.engine {engine} deploys a {kind}: a rollback across engines would leave "
            f"both running; deploy v{previous_version} again with `cdl deploy apply --version "
            f"{previous_version}` and delete the other resource"
        )
    try:
        manifest = render_for_engine(
            settings,
            environment,
            previous["image"],
            model_version=previous_version,
            serving_memory=serving_memory_of(registry.get_version(name, previous_version).metadata),
        )
    except ManifestError as exc:
        raise KubeError(f"cannot roll back to {name} v{previous_version}: {exc}") from exc
    output = applier(settings, manifest)
    entry = {**deployment_entry(manifest), "rolled_back_from": current_version}
    _record(registry, name, previous_version, environment, entry)
    retired = {**current, "retired_at": entry["at"], "replaced_by": previous_version}
    registry.add_metadata(
        name,
        current_version,
        {"deployments": {environment: None, "retired": {environment: retired}}},
        overwrite=True,
    )
    return Deployed(
        environment,
        previous_version,
        previous["image"],
        manifest.namespace,
        manifest.name,
        output,
    )
