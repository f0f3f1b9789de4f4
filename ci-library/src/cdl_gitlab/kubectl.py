"""``kubectl`` for the commands that create Kubernetes objects (``cdl deploy apply``, trial
submission, ``cdl data deploy``): the kubeconfig from the environment, Secrets through
standard input only, and every line shown to the user scrubbed of the secrets.

The kubeconfig comes from ``$KUBECONFIG`` (a path) or ``$KUBECONFIG_B64`` (a masked CI/CD
variable, decoded into a private temporary file). Image pull Secrets are created or updated from
GitLab's deploy token ``$CI_DEPLOY_USER`` / ``$CI_DEPLOY_PASSWORD`` (a project deploy token named
``gitlab-deploy-token`` with ``read_registry``); without it they must already exist.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cdl_gitlab.errors import CDLError

KUBECTL_ENV = "CDL_KUBECTL"
KUBECONFIG_ENVS = ("KUBECONFIG", "KUBECONFIG_B64")
DEPLOY_USER_ENV = "CI_DEPLOY_USER"
DEPLOY_PASSWORD_ENV = "CI_DEPLOY_PASSWORD"


class KubeError(CDLError):
    """kubectl failed, or the deployment did not roll out."""


def kube_access_configured() -> bool:
    """Whether the environment names a kubeconfig (``$KUBECONFIG`` or ``$KUBECONFIG_B64``)."""
    return any(os.environ.get(name) for name in KUBECONFIG_ENVS)


def missing_kube_access() -> str:
    """Why this job cannot manage Kubernetes objects ('' if it can): no kubeconfig named, or
    no kubectl (the CDL role images of the data and training jobs have none)."""
    if not kube_access_configured():
        return "no kubectl access: KUBECONFIG or KUBECONFIG_B64 is not set"
    if not kubectl_executable():
        return "kubectl is not installed in this job's image (or set $CDL_KUBECTL)"
    return ""


def kubectl_executable() -> str | None:
    """``$CDL_KUBECTL``, else ``kubectl`` on PATH (None if neither)."""
    return os.environ.get(KUBECTL_ENV) or shutil.which("kubectl")


def unmanaged_secrets_line(owner: str, names: list[str], namespace: str, missing: str) -> str:
    """The one line a job prints when it cannot manage ``owner``'s Secrets (``missing``: why,
    from :func:`missing_kube_access`)."""
    return (
        f"the {owner} Secrets {', '.join(names)} in namespace {namespace} are neither created "
        f"nor checked ({missing}): they must exist there"
    )


class Kubectl:
    """Runs ``kubectl`` with the kubeconfig from the environment; scrubs secrets from output."""

    def __init__(self, secrets: list[str] | None = None, timeout: float = 900.0) -> None:
        executable = kubectl_executable()
        if not executable:
            raise KubeError("kubectl not found on PATH (install it, or set $CDL_KUBECTL)")
        self.executable = executable
        self.secrets = [s for s in (secrets or []) if s]
        self.timeout = timeout
        self._env: dict[str, str] | None = None

    def add_secrets(self, *values: str) -> None:
        """Scrub ``values`` (and their base64 and JSON-escaped forms) from all output."""
        for value in values:
            if value:
                self.secrets += [
                    value,
                    base64.b64encode(value.encode()).decode(),
                    json.dumps(value)[1:-1],
                ]

    @contextlib.contextmanager
    def session(self) -> Iterator[Kubectl]:
        """Provide the kubeconfig for the duration of the block (a private temp file if B64)."""
        env = dict(os.environ)
        encoded = env.pop("KUBECONFIG_B64", "")
        with tempfile.TemporaryDirectory(prefix="cdl-kube-") as folder:
            if not env.get("KUBECONFIG"):
                if not encoded:
                    raise KubeError(
                        "no cluster credentials: set KUBECONFIG (a path) or KUBECONFIG_B64 "
                        "(a masked CI/CD variable with the base64 kubeconfig)"
                    )
                try:
                    config = base64.b64decode(encoded, validate=True)
                except ValueError:
                    raise KubeError("KUBECONFIG_B64 is not valid base64") from None
                path = Path(folder) / "kubeconfig"
                path.touch(mode=0o600)
                path.write_bytes(config)
                env["KUBECONFIG"] = str(path)
                self.secrets.append(encoded)
            self._env = env
            try:
                yield self
            finally:
                self._env = None

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def run(self, args: list[str], stdin: str | None = None, check: bool = True) -> str:
        """Run ``kubectl args``; KubeError with scrubbed stderr if it fails (when ``check``)."""
        if self._env is None:
            raise RuntimeError("Kubectl.run outside a session()")
        try:
            result = subprocess.run(
                [self.executable, *args],
                input=stdin,
                capture_output=True,
                text=True,
                env=self._env,
                timeout=self.timeout,
            )
        except subprocess.TimeoutExpired:
            raise KubeError(f"kubectl {args[0]} timed out after {self.timeout:.0f} s") from None
        if check and result.returncode != 0:
            raise KubeError(
                f"kubectl {args[0]} failed (exit {result.returncode}): "
                f"{self.scrub(result.stderr.strip() or result.stdout.strip())}"
            )
        return self.scrub(result.stdout.strip())

    def secret_exists(self, name: str, namespace: str) -> bool:
        """Whether the Secret ``name`` exists in ``namespace``."""
        return bool(
            self.run(["get", "secret", name, "-n", namespace, "--ignore-not-found", "-o", "name"])
        )


def managed_secret(name: str, namespace: str, secret_type: str, content: dict[str, Any]) -> str:
    """A Secret managed by cdl (``content``: its ``data`` or ``stringData``), as JSON for
    ``kubectl apply -f -``."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {"app.kubernetes.io/managed-by": "cdl"},
            },
            "type": secret_type,
            **content,
        }
    )


def opaque_secret_manifest(name: str, namespace: str, values: dict[str, str]) -> str:
    """An Opaque Secret of ``values`` (``data``, not ``stringData``: ``kubectl apply`` then
    drops a key that is no longer given)."""
    data = {key: base64.b64encode(value.encode()).decode() for key, value in values.items()}
    return managed_secret(name, namespace, "Opaque", {"data": data})


def apply_opaque_secret(kubectl: Kubectl, name: str, namespace: str, values: dict[str, str]) -> str:
    """Create or update the Opaque Secret ``name`` holding ``values`` (scrubbed from all
    output); kubectl's line."""
    kubectl.add_secrets(*values.values())
    return kubectl.run(["apply", "-f", "-"], stdin=opaque_secret_manifest(name, namespace, values))


def ensure_secret_from_environment(
    kubectl: Kubectl, name: str, namespace: str, variables: dict[str, str], creator: str
) -> str:
    """Create or update the Opaque Secret ``name`` whose keys are ``variables``' keys, each
    value from the environment variable it maps to, when all of them are set; otherwise
    check that the Secret exists. Returns kubectl's line (no values)."""
    values = {key: os.environ.get(env, "") for key, env in variables.items()}
    if variables and all(values.values()):
        return apply_opaque_secret(kubectl, name, namespace, values)
    if not kubectl.secret_exists(name, namespace):
        missing = sorted({env for key, env in variables.items() if not values[key]})
        kind = "a masked CI/CD variable" if len(missing) == 1 else "masked CI/CD variables"
        how = f"set {', '.join(missing)} ({kind}) so {creator} creates it, or " if missing else ""
        literals = " ".join(f'--from-literal={key}="${env}"' for key, env in variables.items())
        raise KubeError(
            f"the Secret {name} does not exist in namespace {namespace}: {how}create it "
            f"yourself (kubectl create secret generic {name} -n {namespace} {literals})".rstrip()
        )
    return f"secret/{name} exists"


def registry_server(image: str) -> str:
    """The registry host of ``image`` (``host[:port]``), else ``$CI_REGISTRY``."""
    first = image.split("/", 1)[0]
    if "/" in image and ("." in first or ":" in first or first == "localhost"):
        return first
    server = os.environ.get("CI_REGISTRY", "")
    if not server:
        raise KubeError(
            f"image {image!r} names no registry host and $CI_REGISTRY is not set: cannot "
            "tell which registry the pull secret is for"
        )
    return server


def docker_config(server: str, user: str, password: str) -> str:
    """The ``.dockerconfigjson`` of one registry login."""
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    return json.dumps({"auths": {server: {"username": user, "password": password, "auth": auth}}})


def pull_secret_manifest(name: str, namespace: str, config: str) -> str:
    """The image pull Secret of the ``.dockerconfigjson`` ``config``."""
    encoded = base64.b64encode(config.encode()).decode()
    return managed_secret(
        name, namespace, "kubernetes.io/dockerconfigjson", {"data": {".dockerconfigjson": encoded}}
    )


def ensure_pull_secret(
    kubectl: Kubectl, name: str, namespace: str, image: str, creator: str
) -> str:
    """Create or update the pull secret ``name`` for ``image``'s registry from the deploy token;
    without the token, check that it exists. Returns kubectl's line (no credentials)."""
    user = os.environ.get(DEPLOY_USER_ENV, "")
    password = os.environ.get(DEPLOY_PASSWORD_ENV, "")
    if user and password:
        config = docker_config(registry_server(image), user, password)
        kubectl.add_secrets(password, f"{user}:{password}", config)
        return kubectl.run(
            ["apply", "-f", "-"], stdin=pull_secret_manifest(name, namespace, config)
        )
    if not kubectl.secret_exists(name, namespace):
        raise KubeError(
            f"the image pull secret {name} does not exist in namespace {namespace}: set "
            f"{DEPLOY_USER_ENV}/{DEPLOY_PASSWORD_ENV} (a GitLab deploy token named "
            "gitlab-deploy-token with read_registry; GitLab passes it to every job) so "
            f"{creator} creates it, or create it yourself (kubectl create secret "
            f"docker-registry {name} -n {namespace})"
        )
    return f"secret/{name} exists"
