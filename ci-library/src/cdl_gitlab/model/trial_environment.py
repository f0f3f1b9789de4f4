"""What a trial on the cluster needs besides its code: image, endpoints, secrets, pull secret.

Applied to the experiment config in memory at submission (never to ``model/*.yaml`` in git):

- ``environment.image``: ``$CDL_TRAIN_IMAGE`` (the CI ``model-build-image`` job's dotenv
  report: ``<repository>@sha256:<digest>``) for CPU and CUDA slots, unless the config names a
  CUDA image of its own; without it, the config's own ``environment.image``. Every image must
  be pinned by digest: a tag alone is refused (a tag can move between submission and the
  trial's start, and Determined's default image has no ``cdl_gitlab``).
- ``environment.environment_variables``: ``CDL_PROFILE=cluster`` and ``PACHD_ADDRESS`` (from
  the environment or ``cluster.pachyderm_address``).
- The secrets: the labels DSN (the variable named by ``cluster.postgres_dsn_env``) and
  Pachyderm's auth token (``PACH_PYTHON_AUTH_TOKEN``, ``PACH_PYTHON_OIDC_TOKEN``) where set.
  With ``cluster.trial_secret`` (a Kubernetes Secret with keys named like the variables) they
  are references, ``env[].valueFrom.secretKeyRef`` of the pod spec's ``determined-container``
  (which Determined 0.38's Kubernetes resource manager merges into the trial's container), and
  no value leaves CI. Without it the values from the submitting job's environment go into
  ``environment.environment_variables``, which the master stores with the experiment's config.
- ``environment.pod_spec.spec.imagePullSecrets``: the Kubernetes Secret named by
  ``cluster.image_pull_secret`` (a name only; the credentials stay in Kubernetes).
  ``environment.registry_auth`` is not used: the Kubernetes resource manager ignores it, and it
  would carry the credentials in the config.
"""

from __future__ import annotations

import copy
import os
import re
from typing import TYPE_CHECKING, Any

from cdl_gitlab.errors import CDLError

if TYPE_CHECKING:
    from cdl_gitlab.config import Settings

IMAGE_ENV = "CDL_TRAIN_IMAGE"
DETERMINED_CONTAINER = "determined-container"
PACH_TOKEN_ENVS = ("PACH_PYTHON_AUTH_TOKEN", "PACH_PYTHON_OIDC_TOKEN")
DEVICE_TYPES = ("cpu", "cuda", "rocm")
_PINNED = re.compile(r"^[^\s@]+@sha256:[0-9a-f]{64}$")


class TrialEnvironmentError(CDLError):
    """The trial's image or variables cannot be set for the cluster."""


def pinned(image: str) -> bool:
    """True for ``<repository>[:tag]@sha256:<64 hex digits>``."""
    return bool(_PINNED.match(image))


def _check_pinned(image: Any, where: str) -> str:
    if not isinstance(image, str) or not pinned(image):
        raise TrialEnvironmentError(
            f"{where} is {image!r}: the training image must be pinned by digest "
            "(<repository>@sha256:<digest>; the CI job model-build-image hands it on as "
            f"{IMAGE_ENV}), a tag alone can move and Determined's default image lacks cdl_gitlab"
        )
    return image


def trial_image(environment: dict[str, Any]) -> str | dict[str, str]:
    """The ``environment.image`` to submit: ``$CDL_TRAIN_IMAGE`` or the config's, pinned."""
    own = environment.get("image")
    built = os.environ.get(IMAGE_ENV, "").strip()
    if built:
        _check_pinned(built, f"${IMAGE_ENV}")
        images = {"cpu": built, "cuda": built}
        if isinstance(own, dict) and own.get("cuda"):
            images["cuda"] = _check_pinned(own["cuda"], "environment.image.cuda")
        return images
    if own is None or own == {}:
        raise TrialEnvironmentError(
            "no training image: the trial would run in Determined's default image, which "
            f"cannot import cdl_gitlab. Set {IMAGE_ENV}=<repository>@sha256:<digest> (the CI "
            "job model-build-image does) or environment.image pinned by digest"
        )
    if isinstance(own, str):
        return _check_pinned(own, "environment.image")
    if not isinstance(own, dict):
        raise TrialEnvironmentError(f"environment.image: expected a string or a mapping: {own!r}")
    return {
        device: _check_pinned(image, f"environment.image.{device}")
        for device, image in own.items()
        if device in DEVICE_TYPES
    }


def trial_variables(settings: Settings) -> dict[str, str]:
    """The plain variables a CDL trial reads on the cluster (no secrets)."""
    if not settings.pachyderm_address:
        raise TrialEnvironmentError(
            "the trial reads its data from Pachyderm: set cluster.pachyderm_address in "
            "cdl.yaml or PACHD_ADDRESS"
        )
    return {"CDL_PROFILE": "cluster", "PACHD_ADDRESS": settings.pachyderm_address}


def secret_values_in_environment(settings: Settings) -> dict[str, str]:
    """The secret variables' values set in this process's environment: the DSN and the
    Pachyderm tokens that are set; empty when the DSN is not."""
    env_name = settings.config.cluster.postgres_dsn_env
    dsn = os.environ.get(env_name, "")
    if not dsn:
        return {}
    values = {env_name: dsn}
    values.update({name: os.environ[name] for name in PACH_TOKEN_ENVS if os.environ.get(name)})
    return values


def trial_secret_values(settings: Settings) -> dict[str, str]:
    """The secret variables' values from this process's environment (no ``trial_secret``)."""
    values = secret_values_in_environment(settings)
    if not values:
        raise TrialEnvironmentError(
            f"the trial reads its labels from PostgreSQL: set "
            f"{settings.config.cluster.postgres_dsn_env} (cluster.postgres_dsn_env) as a "
            "masked CI/CD variable, or name a Kubernetes Secret holding it in "
            "cluster.trial_secret"
        )
    return values


def secret_references(settings: Settings, secret: str) -> list[dict[str, Any]]:
    """``env`` entries of the determined-container that read the secrets from ``secret``."""

    def reference(name: str, optional: bool) -> dict[str, Any]:
        key_ref: dict[str, Any] = {"name": secret, "key": name}
        if optional:
            key_ref["optional"] = True
        return {"name": name, "valueFrom": {"secretKeyRef": key_ref}}

    dsn = reference(settings.config.cluster.postgres_dsn_env, optional=False)
    return [dsn, *(reference(name, optional=True) for name in PACH_TOKEN_ENVS)]


def _determined_container(pod_spec: dict[str, Any]) -> dict[str, Any]:
    spec = pod_spec.get("spec") or {}
    pod_spec["spec"] = spec
    containers = spec.get("containers") or []
    spec["containers"] = containers
    for container in containers:
        if container.get("name") == DETERMINED_CONTAINER:
            return container
    container = {"name": DETERMINED_CONTAINER}
    containers.append(container)
    return container


def _merge_variables(existing: Any, variables: dict[str, str]) -> Any:
    """``existing`` (a list, or a per-device mapping of lists) with ``variables`` set."""

    def merged(items: list[str]) -> list[str]:
        kept = [item for item in items if item.partition("=")[0] not in variables]
        return kept + [f"{name}={value}" for name, value in variables.items()]

    if isinstance(existing, dict):
        devices = {key: list(value or []) for key, value in existing.items()}
        for device in DEVICE_TYPES:
            devices[device] = merged(devices.get(device, []))
        return devices
    return merged(list(existing or []))


def apply_trial_environment(settings: Settings, config: dict[str, Any]) -> dict[str, Any]:
    """A copy of the experiment ``config`` with image, variables and pull secret set."""
    result = copy.deepcopy(config)
    environment = result.get("environment") or {}
    if not isinstance(environment, dict):
        raise TrialEnvironmentError("environment: expected a mapping")
    environment["image"] = trial_image(environment)
    cluster = settings.config.cluster
    variables = trial_variables(settings)
    if not cluster.trial_secret:
        variables.update(trial_secret_values(settings))
    environment["environment_variables"] = _merge_variables(
        environment.get("environment_variables"), variables
    )
    if cluster.trial_secret or cluster.image_pull_secret:
        pod_spec = environment.get("pod_spec") or {}
        environment["pod_spec"] = pod_spec
        if cluster.trial_secret:
            container = _determined_container(pod_spec)
            references = secret_references(settings, cluster.trial_secret)
            names = {entry["name"] for entry in references}
            own = [e for e in container.get("env") or [] if e.get("name") not in names]
            container["env"] = [*own, *references]
        if cluster.image_pull_secret:
            spec = pod_spec.get("spec") or {}
            pod_spec["spec"] = spec
            name = cluster.image_pull_secret
            pulls = [p for p in spec.get("imagePullSecrets") or [] if p.get("name") != name]
            spec["imagePullSecrets"] = [*pulls, {"name": name}]
    result["environment"] = environment
    return result


def without_secrets(settings: Settings, config: dict[str, Any]) -> dict[str, Any]:
    """A copy of a config the master recorded, without the secret variables submission set
    (the registry keeps the experiment config in the version's metadata)."""
    secret = {settings.config.cluster.postgres_dsn_env, *PACH_TOKEN_ENVS}
    result = copy.deepcopy(config)
    environment = result.get("environment")
    if not isinstance(environment, dict):
        return result

    def kept(items: Any) -> list[str]:
        return [i for i in items or [] if str(i).partition("=")[0] not in secret]

    variables = environment.get("environment_variables")
    if isinstance(variables, dict):
        environment["environment_variables"] = {k: kept(v) for k, v in variables.items()}
    elif variables is not None:
        environment["environment_variables"] = kept(variables)
    return result
