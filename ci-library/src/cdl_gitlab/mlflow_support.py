"""What the ``mlflow`` registry and tracking backends share: the client, errors, the REST
subset GitLab serves, tag encoding and checkpoint archives.

The tracking server is ``$MLFLOW_TRACKING_URI`` (on GitLab:
``$CI_API_V4_URL/projects/$CI_PROJECT_ID/ml/mlflow``); the client reads the token from
``$MLFLOW_TRACKING_TOKEN`` itself (a masked CI/CD variable, never a setting). ``mlflow`` (the
``mlflow-skinny`` client, extra ``mlflow``) is imported lazily.

Both backends use only the calls of GitLab's MLflow subset (:data:`GITLAB_SUPPORTED`):
no run updates (a run's end state is the tag ``cdl.state``), no model-version tags after
creation, no stages or aliases, no registered-model search, no ``logged-models``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import tarfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdl_gitlab.errors import CDLError

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

URI_ENV = "MLFLOW_TRACKING_URI"
TOKEN_ENV = "MLFLOW_TRACKING_TOKEN"
CI_JOB_TAG = "gitlab.CI_JOB_ID"
SEMVER_TAG = "gitlab.version"
CHECKPOINT_ARCHIVE = "checkpoint.tar.gz"
TAG_CHUNK = 4000
"""Characters per tag value of a JSON document split over tags (MLflow's smallest guaranteed
tag value is 5000 bytes)."""

# GitLab's MLflow subset (doc/user/project/ml/experiment_tracking/mlflow_client.md), as
# (method, path under the tracking URI). ``*`` stands for one or more path segments.
# The two artifact reads are GitLab's ``download_artifacts``/``list_artifacts`` (17.9); the
# rest is the list of the CDL issue: experiments create/get/set, start_run, search_runs,
# log_param/log_metric/log_batch, log_artifact, create_registered_model,
# create_model_version, get_latest_versions.
GITLAB_SUPPORTED: tuple[tuple[str, str], ...] = (
    ("POST", "/api/2.0/mlflow/experiments/create"),
    ("GET", "/api/2.0/mlflow/experiments/get"),
    ("GET", "/api/2.0/mlflow/experiments/get-by-name"),
    ("POST", "/api/2.0/mlflow/runs/create"),
    ("POST", "/api/2.0/mlflow/runs/search"),
    ("POST", "/api/2.0/mlflow/runs/log-parameter"),
    ("POST", "/api/2.0/mlflow/runs/log-metric"),
    ("POST", "/api/2.0/mlflow/runs/log-batch"),
    ("PUT", "/api/2.0/mlflow-artifacts/artifacts/*"),
    ("GET", "/api/2.0/mlflow-artifacts/artifacts/*"),
    ("GET", "/api/2.0/mlflow-artifacts/artifacts"),
    ("POST", "/api/2.0/mlflow/registered-models/create"),
    ("POST", "/api/2.0/mlflow/model-versions/create"),
    ("POST", "/api/2.0/mlflow/registered-models/get-latest-versions"),
)


def gitlab_supports(method: str, path: str) -> bool:
    """Whether GitLab's MLflow subset serves ``method path`` (path below the tracking URI)."""
    for allowed_method, pattern in GITLAB_SUPPORTED:
        if method.upper() != allowed_method:
            continue
        regex = "^" + re.escape(pattern).replace(r"\*", "[^?]+") + "$"
        if re.match(regex, path):
            return True
    return False


class MlflowError(CDLError):
    """The MLflow tracking server is not configured, unreachable or refused a request."""


def tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI``, or a clear error."""
    uri = os.environ.get(URI_ENV, "").strip()
    if not uri:
        raise MlflowError(
            f"registry.backend is mlflow but {URI_ENV} is not set: point it at the MLflow "
            "server (GitLab: $CI_API_V4_URL/projects/$CI_PROJECT_ID/ml/mlflow) and put the "
            f"token in the masked variable {TOKEN_ENV}"
        )
    if not uri.startswith(("http://", "https://")):
        raise MlflowError(f"{URI_ENV} must be an http(s):// URL (got {uri!r})")
    return uri.rstrip("/")


def connect(uri: str | None = None) -> MlflowClient:
    """An MLflow client of ``uri`` (default ``$MLFLOW_TRACKING_URI``) for tracking and models."""
    try:
        from mlflow import MlflowClient
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise MlflowError(
            "registry.backend mlflow needs the MLflow client: pip install 'cdl-gitlab[mlflow]'"
        ) from exc
    uri = uri or tracking_uri()
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@contextlib.contextmanager
def mlflow_errors(action: str) -> Iterator[None]:
    """Turn the client's errors into one-line CDL errors naming the action."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        message = str(exc.message).splitlines()[0] if exc.message else exc.error_code
        raise MlflowError(
            f"{action}: the MLflow server answered {exc.error_code}: {message}"
        ) from (exc)


def error_code(exc: BaseException) -> str | None:
    """The MLflow error code behind an :class:`MlflowError` (or an MlflowException)."""
    cause = exc.__cause__ if isinstance(exc, MlflowError) else exc
    return getattr(cause, "error_code", None)


def experiment_id(client: MlflowClient, name: str) -> str:
    """The id of experiment ``name``, created when missing (``set_experiment``)."""
    with mlflow_errors(f"find experiment {name}"):
        found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    try:
        with mlflow_errors(f"create experiment {name}"):
            return str(client.create_experiment(name))
    except MlflowError as exc:
        if error_code(exc) != "RESOURCE_ALREADY_EXISTS":
            raise
        with mlflow_errors(f"find experiment {name}"):  # created concurrently
            return str(client.get_experiment_by_name(name).experiment_id)


def search_all(client: MlflowClient, experiment: str) -> list[Run]:
    """Every run of one experiment, oldest first (no filter: GitLab's search takes none)."""
    runs: list[Run] = []
    token: str | None = None
    with mlflow_errors("search runs"):
        while True:
            page = client.search_runs([experiment], max_results=1000, page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                break
    return sorted(runs, key=lambda run: (run.info.start_time or 0, run.info.run_id))


def json_tags(prefix: str, document: Any) -> dict[str, str]:
    """``document`` as JSON split over the tags ``<prefix>.0`` ... and ``<prefix>.chunks``."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    chunks = [text[i : i + TAG_CHUNK] for i in range(0, len(text), TAG_CHUNK)] or [""]
    tags = {f"{prefix}.{i}": chunk for i, chunk in enumerate(chunks)}
    tags[f"{prefix}.chunks"] = str(len(chunks))
    return tags


def read_json_tags(tags: Mapping[str, str], prefix: str) -> Any:
    """The document :func:`json_tags` wrote (None when the tags are missing)."""
    count = tags.get(f"{prefix}.chunks")
    if count is None:
        return None
    return json.loads("".join(tags.get(f"{prefix}.{i}", "") for i in range(int(count))))


def flat_params(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested ``values`` as ``a.b`` keys with string values (MLflow params are strings)."""
    flat: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flat_params(value, f"{name}."))
        else:
            flat[name] = value if isinstance(value, str) else json.dumps(value)
    return flat


def artifact_repository(artifact_uri: str, uri: str) -> Any:
    """The client's artifact store of a run (``artifact_uri``) on the server ``uri``.

    Multipart transfers stay off (they probe ``/api/3.0/mlflow/server-info``, which GitLab
    lacks), and so does the download progress bar (CI logs).
    """
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    for name in (
        "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD",
        "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR",
    ):
        os.environ.setdefault(name, "false")
    return get_artifact_repository(artifact_uri, tracking_uri=uri)


def archive_folder(folder: Path, target: Path) -> Path:
    """``folder``'s files as one gzipped tar ``target`` (GitLab's log_artifact takes files)."""
    with tarfile.open(target, "w:gz") as archive:
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file():
                archive.add(path, arcname=str(path.relative_to(folder)), recursive=False)
    return target


def extract_archive(archive: Path, dest: Path) -> None:
    """Unpack :func:`archive_folder`'s file into ``dest`` (members stay inside ``dest``)."""
    data = Path(archive).read_bytes()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(dest, filter="data")
