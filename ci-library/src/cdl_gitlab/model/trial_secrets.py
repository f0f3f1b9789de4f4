"""The Kubernetes Secrets the cluster's trial pods read: created before submission, not by hand.

On the cluster profile, in Determined's namespace (``cluster.determined_namespace``, empty:
``cluster.namespace``), through ``kubectl`` (``cdl_gitlab.kubectl``: ``$KUBECONFIG`` or
``$KUBECONFIG_B64``; values only through its standard input, never printed):

- ``cluster.trial_secret``: an Opaque Secret with the keys the trial's ``secretKeyRef``\\ s
  name (``cdl_gitlab.model.trial_environment``): the labels DSN (the variable named by
  ``cluster.postgres_dsn_env``) and the Pachyderm tokens that are set, applied from the
  submitting job's environment. Without the DSN there, the Secret must already exist.
- ``cluster.image_pull_secret``: the docker-registry Secret of the training image's registry,
  from GitLab's deploy token (``$CI_DEPLOY_USER`` / ``$CI_DEPLOY_PASSWORD``); without it, the
  Secret must already exist.

Submission does this when either is set and the job has kubectl access (a kubeconfig and
``kubectl``; the CDL role images have no kubectl); without it the Secrets are left as they
are and submission says so in one line. ``cdl model secrets`` does only this step, and
without kubectl access it is an error.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from cdl_gitlab.errors import CDLError
from cdl_gitlab.kubectl import (
    Kubectl,
    apply_opaque_secret,
    ensure_pull_secret,
    missing_kube_access,
    unmanaged_secrets_line,
)
from cdl_gitlab.model.trial_environment import IMAGE_ENV, secret_values_in_environment

if TYPE_CHECKING:
    from cdl_gitlab.config import Settings


class TrialSecretsError(CDLError):
    """The trials' Kubernetes Secrets cannot be created or are missing."""


def trial_secrets_needed(settings: Settings) -> bool:
    """Whether the trials name Secrets (``trial_secret`` or ``image_pull_secret`` is set)."""
    cluster = settings.config.cluster
    return bool(cluster.trial_secret or cluster.image_pull_secret)


def image_of(image: Any) -> str:
    """One image of an experiment's ``environment.image`` (a string, or per device: cpu's)."""
    if isinstance(image, dict):
        return str(image.get("cpu") or next(iter(image.values()), ""))
    return str(image or "")


def _apply_trial_secret(kubectl: Kubectl, settings: Settings, name: str, namespace: str) -> str:
    values = secret_values_in_environment(settings)
    if values:
        applied = apply_opaque_secret(kubectl, name, namespace, values)
        return f"{applied} in namespace {namespace} (keys {', '.join(values)})"
    if not kubectl.secret_exists(name, namespace):
        env_name = settings.config.cluster.postgres_dsn_env
        raise TrialSecretsError(
            f"the trial secret {name} (cluster.trial_secret) does not exist in namespace "
            f"{namespace} (cluster.determined_namespace) and {env_name} is not set to create "
            f"it: set {env_name} (and PACH_PYTHON_AUTH_TOKEN where Pachyderm needs one) as "
            "masked CI/CD variables so the submission creates it, or create it yourself: "
            f"kubectl create secret generic {name} -n {namespace} "
            f'--from-literal={env_name}="$DSN"'
        )
    env_name = settings.config.cluster.postgres_dsn_env
    return f"secret/{name} exists in namespace {namespace} (kept as it is: {env_name} is not set)"


def ensure_trial_secrets(settings: Settings, image: str = "", required: bool = False) -> list[str]:
    """Create or check ``cluster.trial_secret`` and ``cluster.image_pull_secret`` in
    Determined's namespace; ``image`` (default ``$CDL_TRAIN_IMAGE``) names the registry of the
    pull secret. Returns what was done, one line each, without any value. Without kubectl
    access (kubeconfig and kubectl) the Secrets are left as they are, and the line says so;
    with ``required`` that is an error."""
    cluster = settings.config.cluster
    names = [name for name in (cluster.trial_secret, cluster.image_pull_secret) if name]
    if not names:
        return []
    namespace = settings.determined_namespace
    missing = missing_kube_access()
    if missing:
        message = unmanaged_secrets_line("trials'", names, namespace, missing)
        if required:
            raise TrialSecretsError(message)
        return [message]
    image = image or os.environ.get(IMAGE_ENV, "").strip()
    output = []
    kubectl = Kubectl(timeout=120.0)
    with kubectl.session():
        if cluster.trial_secret:
            output.append(_apply_trial_secret(kubectl, settings, cluster.trial_secret, namespace))
        if cluster.image_pull_secret:
            creator = "trial submission (or `cdl model secrets`)"
            line = ensure_pull_secret(kubectl, cluster.image_pull_secret, namespace, image, creator)
            output.append(f"{line} in namespace {namespace}")
    return output
