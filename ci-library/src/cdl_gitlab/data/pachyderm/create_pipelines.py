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

With kubectl access (``$KUBECONFIG`` / ``$KUBECONFIG_B64``), that pull secret is created or
updated in Pachyderm's namespace (``cluster.pachyderm_namespace``, empty:
``cluster.namespace``) from GitLab's deploy token before the pipelines are sent, or checked
to exist there without the token (``cdl_gitlab.kubectl.ensure_pull_secret``).
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
from cdl_gitlab.kubectl import Kubectl, ensure_pull_secret, kube_access_configured

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


def ensure_pipelines_pull_secret(
    settings: Settings, specs: list[tuple[str, dict[str, Any]]]
) -> str | None:
    """Create (deploy token) or check ``cluster.image_pull_secret`` in Pachyderm's namespace
    when a spec pulls with it and kubectl access is configured; kubectl's line, else None."""
    secret = settings.config.cluster.image_pull_secret
    images = [
        spec["transform"]["image"]
        for _name, spec in specs
        if secret in (spec["transform"].get("image_pull_secrets") or [])
    ]
    if not (secret and images and kube_access_configured()):
        return None
    namespace = settings.pachyderm_namespace
    kubectl = Kubectl(timeout=120.0)
    with kubectl.session():
        line = ensure_pull_secret(kubectl, secret, namespace, images[0], "`cdl data deploy`")
    return f"{line} in namespace {namespace}"


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
    pulled = ensure_pipelines_pull_secret(settings, specs)
    if pulled:
        echo(pulled)
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
