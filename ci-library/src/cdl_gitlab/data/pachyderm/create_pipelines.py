"""``cdl data deploy``: create the repos the pipelines read, then create or update the pipelines.

Order (pachd refuses a pipeline whose input repo does not exist): every pfs input repo that
is not another pipeline's output (``<prefix>-train``, ``-test``, ``-train-labels``,
``-test-labels``) is created first, idempotently; then each spec, upstream first, is sent as
JSON through ``CreatePipelineV2`` (``update=True``), which creates the pipeline's output repo.

What is filled in at deploy time, never in the spec file in git:

- the image reference's ``$VAR`` / ``${VAR}`` placeholders, from the environment (CI sets
  ``CDL_IMAGE_TAG`` to the commit SHA it built);
- the image's digest (``image_digest``, ``sha256:<hex>``): CI passes the digest its build job
  pushed, so the cluster runs exactly the image CI built, never what the tag points at later;
- ``transform.image_pull_secrets``: ``cluster.image_pull_secret`` of ``cdl.yaml`` (the
  Kubernetes docker-registry secret that lets the cluster pull the project's registry images),
  unless the spec names its own.

With kubectl access (``$KUBECONFIG`` / ``$KUBECONFIG_B64``), the Kubernetes Secrets the specs
use are made in Pachyderm's namespace (``cluster.pachyderm_namespace``, empty:
``cluster.namespace``) before the pipelines are sent (:func:`ensure_pipelines_secrets`): the
pull secret from GitLab's deploy token, and each Secret of ``transform.secrets`` whose keys
are read into environment variables (``key`` + ``env_var``, e.g. the labels DSN) from the
job's variables of the same names; without those values (or for a mounted Secret) each must
exist there already.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cdl_gitlab.data.errors import SpecError
from cdl_gitlab.data.pachyderm.runner import load_pipelines, order, pfs_inputs
from cdl_gitlab.data.pachyderm.spec import expand_image
from cdl_gitlab.kubectl import (
    Kubectl,
    ensure_pull_secret,
    ensure_secret_from_environment,
    missing_kube_access,
    unmanaged_secrets_line,
)

if TYPE_CHECKING:
    from cdl_gitlab.config import Settings
    from cdl_gitlab.data.stores.pachyderm_store import PachydermStore

log = logging.getLogger(__name__)

_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


def pin_digest(image: str, digest: str) -> str:
    """``image`` pinned to ``digest`` (``repo[:tag]@sha256:...``; a previous digest replaced)."""
    if not _DIGEST_RE.match(digest):
        raise SpecError(
            f"image digest {digest!r} is not of the form sha256:<64 hex digits> "
            "(the content of the image-digest.txt the image build job writes)"
        )
    return f"{image.split('@', 1)[0]}@{digest}"


def rendered_specs(settings: Settings, image_digest: str = "") -> list[tuple[str, dict[str, Any]]]:
    """The project's specs, upstream first, with the image (and digest, pull secret) filled in."""
    secret = settings.config.cluster.image_pull_secret
    specs = []
    for pipeline in order(load_pipelines(settings.root)):
        spec = copy.deepcopy(pipeline.spec)
        transform = spec["transform"]
        transform["image"] = expand_image(transform["image"], os.environ)
        if image_digest:
            transform["image"] = pin_digest(transform["image"], image_digest)
        own = transform.get("image_pull_secrets") or transform.get("imagePullSecrets")
        if secret and not own:
            transform["image_pull_secrets"] = [secret]
        specs.append((pipeline.name, spec))
    return specs


def input_repos(specs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """The repos the pipelines read that no pipeline writes (they must exist beforehand)."""
    outputs = {name for name, _spec in specs}
    repos = {item.repo for _name, spec in specs for item in pfs_inputs(spec["input"])}
    return sorted(repos - outputs)


def spec_secret_variables(specs: list[tuple[str, dict[str, Any]]]) -> dict[str, dict[str, str]]:
    """The Kubernetes Secrets of the specs' ``transform.secrets``: name -> {key: env_var} of
    the keys read into environment variables (empty for a Secret only mounted as files)."""
    secrets: dict[str, dict[str, str]] = {}
    for _name, spec in specs:
        for entry in spec["transform"].get("secrets") or []:
            keys = secrets.setdefault(str(entry["name"]), {})
            if entry.get("key") and entry.get("env_var"):
                keys[str(entry["key"])] = str(entry["env_var"])
    return secrets


def ensure_pipelines_secrets(
    settings: Settings, specs: list[tuple[str, dict[str, Any]]]
) -> list[str]:
    """With kubectl access: the pull secret the specs use, from the deploy token, and every
    Secret of their ``transform.secrets``, from the job's variables of the keys' ``env_var``
    names, created or updated in Pachyderm's namespace, or checked to exist there. One line
    each (no value); without kubectl access one line saying they are left as they are."""
    pull = settings.config.cluster.image_pull_secret
    images = [
        spec["transform"]["image"]
        for _name, spec in specs
        if pull and pull in (spec["transform"].get("image_pull_secrets") or [])
    ]
    secrets = spec_secret_variables(specs)
    if not (images or secrets):
        return []
    namespace = settings.pachyderm_namespace
    missing = missing_kube_access()
    if missing:
        names = [*([pull] if images else []), *secrets]
        return [unmanaged_secrets_line("pipelines'", names, namespace, missing)]
    creator = "`cdl data deploy`"
    lines = []
    kubectl = Kubectl(timeout=120.0)
    with kubectl.session():
        if images:
            lines.append(ensure_pull_secret(kubectl, pull, namespace, images[0], creator))
        for name, variables in secrets.items():
            lines.append(
                ensure_secret_from_environment(kubectl, name, namespace, variables, creator)
            )
    return [f"{line} in namespace {namespace}" for line in lines]


def deploy_pipelines(
    settings: Settings,
    store: PachydermStore | None = None,
    dry_run: bool = False,
    image_digest: str = "",
    echo: Callable[[str], None] = log.info,
) -> list[tuple[str, dict[str, Any]]]:
    """Create the input repos, then create/update every pipeline; returns (name, spec sent)."""
    specs = rendered_specs(settings, image_digest)
    if dry_run:
        return specs
    if store is None:
        from cdl_gitlab.data.stores.pachyderm_store import PachydermStore

        store = PachydermStore.from_address(settings.pachyderm_address)
    for line in ensure_pipelines_secrets(settings, specs):
        echo(line)
    existing = set(store.list_repos())
    for repo in input_repos(specs):
        if repo in existing:
            echo(f"{repo}: input repo exists")
        else:
            store.create_repo(repo, "Input of the project's Pachyderm pipelines")
            echo(f"{repo}: input repo created")
    for name, spec in specs:
        store.create_pipeline(name, json.dumps(spec))
        echo(f"{name}: created or updated")
    return specs
