"""Loading and validating a project's ``cdl.yaml``.

``cdl.yaml`` holds the project's settings and the endpoints of the cluster
profile, never secrets: those come from environment or CI/CD variables whose
*names* the file may give (``postgres_dsn_env``, ``gitlab_token_env``).

Every error names the offending key, e.g. ``cdl.yaml: training.accuracy_threshold:
Input should be less than or equal to 1``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cdl_gitlab.errors import ConfigError

CONFIG_FILE = "cdl.yaml"
PROFILE_ENV = "CDL_PROFILE"
CONFIG_ENV = "CDL_CONFIG"
REGISTRY_ENV = "CDL_REGISTRY"

Profile = Literal["local", "cluster"]
RegistryBackend = Literal["local", "determined", "mlflow"]
ServingEngine = Literal["seldon", "mlserver"]
REGISTRY_BACKENDS: tuple[str, ...] = ("local", "determined", "mlflow")
Framework = Literal["pytorch", "keras"]
Task = Literal["text", "image"]
Slug = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*[a-z0-9]$", max_length=63)]
EnvVarName = Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$")]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
DnsName = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
MEMORY_PATTERN = r"^(auto|[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?)$"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProjectSection(_Section):
    name: str = Field(min_length=1)
    slug: Slug


class ModelSection(_Section):
    name: Slug
    framework: Framework
    task: Task
    classes: list[str] = Field(default_factory=list)
    """Class names in label order; empty means "learned from the labels"."""

    @field_validator("classes")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("class names must be unique")
        return value


class SplitSection(_Section):
    seed: int = 42
    test_ratio: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.2


class ValidationSection(_Section):
    min_chars: Annotated[int, Field(ge=0)] = 0
    max_bytes: Annotated[int, Field(gt=0)] = 10_000_000
    extensions: list[str] = Field(default_factory=list)
    """Allowed file extensions without the dot (empty: any)."""
    max_control_ratio: Fraction = 0.1
    """Text with more control characters than this share is discarded as binary."""
    image_size: list[Annotated[int, Field(gt=0)]] = Field(default_factory=list, max_length=2)
    """Expected [width, height] of image items (empty: any decodable image)."""


class LimitsSection(_Section):
    """Caps on what a data source may contain (see ``cdl_gitlab.data.ingest``)."""

    max_member_bytes: Annotated[int, Field(gt=0)] = 256 * 1024**2
    """A file or archive member larger than this is discarded (``oversized_member``)."""
    max_total_bytes: Annotated[int, Field(gt=0)] = 50 * 1024**3
    """A source larger in total is refused as a whole: nothing is collected."""
    max_compression_ratio: Annotated[float, Field(gt=1.0)] = 200.0
    """A zip member expanding more than this many times is discarded as a zip bomb."""


class DataSection(_Section):
    source: str = ""
    """Canonical URL of the raw data; ``CDL_DATA_MIRROR`` or ``mirror`` overrides it."""
    source_sha256: Annotated[str, Field(pattern=r"^([0-9a-fA-F]{64})?$")] = ""
    """SHA-256 of a single-file ``source`` (an archive): the download and a mirror file are
    checked against it (empty: unchecked; ``CDL_DATA_SHA256`` overrides it)."""
    mirror: str = ""
    """A local copy of ``source``: a path or a ``file://`` URL."""
    repo_prefix: Slug
    """Data repositories are ``<prefix>-raw``, ``<prefix>-train``, ``<prefix>-test`` ..."""
    format: Literal["archive", "idx"] = "archive"
    """``archive``: a folder/zip/tar of ``<class>/<file>`` items, split by ``split``;
    ``idx``: the four MNIST-style idx files (train/test given by the source, not re-split)."""
    branch: str = "master"
    split: SplitSection = SplitSection()
    validation: ValidationSection = ValidationSection()
    limits: LimitsSection = LimitsSection()
    min_items: Annotated[int, Field(ge=1)] = 10
    """Fewest items the train and the test split may keep after validation: below it,
    ``cdl data pipeline`` fails with the discard reasons."""


class TrainingSection(_Section):
    config: str = "model/const.yaml"
    search_config: str = "model/adaptive.yaml"
    distributed_config: str = "model/distributed.yaml"
    accuracy_threshold: Fraction = 0.8
    validation_ratio: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.2


class CompressionSection(_Section):
    enabled: bool = False
    max_accuracy_drop: Fraction = 0.01
    """Largest test-accuracy loss (absolute) a compressed version may have."""
    latency_runs: Annotated[int, Field(ge=1)] = 200
    """Single-item predictions timed per model when comparing latency."""


class DeploymentSection(_Section):
    replicas: Annotated[int, Field(ge=1)] = 1
    cpu: str = "500m"
    memory: Annotated[str, Field(pattern=MEMORY_PATTERN)] = "auto"
    """Memory request and limit of the serving container: ``auto`` derives it from the memory
    ``cdl deploy package`` measured for the version (:mod:`cdl_gitlab.deploy.memory`); an
    explicit quantity (``1536Mi``) wins but is refused below the measured need."""
    workers: Annotated[int, Field(ge=1, le=16)] = 1
    """Gunicorn REST workers of the serving container (``GUNICORN_WORKERS``); each loads its
    own copy of the model, so the derived memory grows with them."""
    local_port: Annotated[int, Field(ge=1, le=65535)] = 9000
    metrics_port: Annotated[int, Field(ge=1, le=65535)] = 6000
    """Local Prometheus metrics port of ``cdl deploy serve`` (the container uses 6000)."""
    max_batch: Annotated[int, Field(ge=1)] = 64
    """Most items one prediction request may carry (more get a 400)."""
    max_text_chars: Annotated[int, Field(ge=1)] = 100_000
    """Longest text a text model accepts per item (longer gets a 400)."""
    scoring_text_chars: Annotated[int, Field(ge=0)] = 200
    """How many leading characters of each text input the scoring data keeps."""
    startup_timeout: Annotated[float, Field(gt=0)] = 120.0
    """Seconds ``cdl deploy serve`` waits for the server's /health/ping."""
    rollout_timeout: Annotated[int, Field(ge=1)] = 600
    """Seconds ``cdl deploy apply`` waits for ``kubectl rollout status``."""
    compression: CompressionSection = CompressionSection()


class ServingSection(_Section):
    engine: ServingEngine = "seldon"
    """Model server: ``seldon`` (Seldon Core's v1 Python wrapper, ``/api/v1.0/predictions``;
    a ``SeldonDeployment`` on the cluster) or ``mlserver`` (MLServer, the V2 / Open Inference
    Protocol, ``/v2/models/<name>/infer``; a KServe ``InferenceService`` on the cluster)."""
    feedback_token_env: EnvVarName | None = None
    """Environment variable of the model server holding the token ``/api/v1.0/feedback``
    requires (``Authorization: Bearer <token>``; 401 without it). Unset: no token."""


class MonitoringSection(_Section):
    enabled: bool = False
    report_window: Annotated[str, Field(pattern=r"^[1-9][0-9]*[mhdw]$")] = "7d"
    """Scoring data a report covers by default (``--last``): a number and m, h, d or w."""
    min_samples: Annotated[int, Field(ge=1)] = 200
    """Fewest scored items in the window to judge drift (fewer: ``insufficient-data``)."""
    psi_warn: Annotated[float, Field(gt=0)] = 0.1
    """Population stability index from which a significant shift is a warning."""
    psi_drift: Annotated[float, Field(gt=0)] = 0.25
    """Population stability index from which a significant shift is drift."""
    p_value: Annotated[float, Field(gt=0, lt=1)] = 0.01
    """Significance level of the KS and chi-square tests (a shift must be significant too)."""
    max_error_rate: Fraction = 0.05
    """Share of rejected requests above which the report warns."""
    accuracy_floor: Fraction | None = None
    """Live accuracy below which the verdict is drift (default: training.accuracy_threshold)."""
    min_labels: Annotated[int, Field(ge=1)] = 30
    """Fewest feedback labels in the window to judge live accuracy."""
    gitlab_url: str = ""
    """GitLab for ``cdl monitor open-issue``; ``$CI_SERVER_URL`` overrides it."""
    gitlab_project: str = ""
    """Project id or path that gets the issues; ``$CI_PROJECT_ID`` overrides it."""


class RegistrySection(_Section):
    backend: RegistryBackend = "local"
    """Experiment tracking and model registry. ``local`` and ``determined`` follow the profile
    in force (local: SQLite under ``local.state_dir``; cluster: Determined's); ``mlflow``: the
    MLflow server at ``$MLFLOW_TRACKING_URI`` (GitLab's model registry in CI) in both profiles,
    its token from ``$MLFLOW_TRACKING_TOKEN``. ``$CDL_REGISTRY`` overrides it."""


class LocalProfileSection(_Section):
    state_dir: str = ".cdl"
    """Where the local profile keeps data repos, registries and checkpoints."""


class ClusterProfileSection(_Section):
    determined_master: str = ""
    """URL of the Determined master; ``DET_MASTER`` overrides it."""
    pachyderm_address: str = ""
    """Address of pachd; ``PACHD_ADDRESS`` overrides it."""
    pipeline_wait_timeout: Annotated[int, Field(ge=1)] = 1800
    """Seconds ``cdl data pipeline`` waits for the cluster's pipelines' output commits."""
    namespace: str = "default"
    determined_namespace: str = ""
    """Kubernetes namespace of Determined's trial pods, where trial submission creates or
    checks ``trial_secret`` and ``image_pull_secret``; empty: ``namespace``."""
    pachyderm_namespace: str = ""
    """Kubernetes namespace of Pachyderm's pipeline pods, where ``cdl data deploy`` creates or
    checks ``image_pull_secret`` and the Secrets of the specs' ``transform.secrets``; empty:
    ``namespace``."""
    image_prefix: str = ""
    image_pull_secret: str = ""
    """Name of a Kubernetes image pull Secret (kubernetes.io/dockerconfigjson) for the
    project's registry images: ``cdl data deploy`` puts it into each Pachyderm spec's
    ``transform.image_pull_secrets``, trials get it as
    ``environment.pod_spec.spec.imagePullSecrets``; empty: they pull without credentials.
    The serving pods always pull with it (empty: ``<model.name>-registry``), and
    ``cdl deploy apply`` creates or updates it in the deployment's namespace from the GitLab
    deploy token (``$CI_DEPLOY_USER`` / ``$CI_DEPLOY_PASSWORD``)."""
    postgres_dsn_env: EnvVarName = "CDL_POSTGRES_DSN"
    trial_secret: str = ""
    """Name of a Kubernetes Secret in Determined's namespace holding the trial's secrets under
    keys named like their variables (the one of ``postgres_dsn_env``, optionally
    ``PACH_PYTHON_AUTH_TOKEN``). Set: trials reference it (pod spec ``secretKeyRef``) and no
    secret value is sent to the master; submission with kubectl access creates or updates it
    from the job's environment, or, without the values there, checks that it exists (without
    kubectl access it must exist). Empty: the values are sent from the submitting job's
    environment as ``environment.environment_variables``."""
    gitlab_token_env: EnvVarName = "CDL_GITLAB_TOKEN"


class ProjectConfig(_Section):
    """The whole of ``cdl.yaml``."""

    version: Literal[1] = 1
    project: ProjectSection
    profile: Profile = "local"
    model: ModelSection
    data: DataSection
    training: TrainingSection = TrainingSection()
    deployment: DeploymentSection = DeploymentSection()
    serving: ServingSection = ServingSection()
    monitoring: MonitoringSection = MonitoringSection()
    registry: RegistrySection = RegistrySection()
    local: LocalProfileSection = LocalProfileSection()
    cluster: ClusterProfileSection = ClusterProfileSection()


class Settings:
    """A loaded ``cdl.yaml`` with its location and the profile in force."""

    def __init__(self, config: ProjectConfig, root: Path, profile: Profile) -> None:
        self.config = config
        self.root = root
        self.profile: Profile = profile

    @property
    def state_dir(self) -> Path:
        """The local profile's state folder (absolute)."""
        return (self.root / self.config.local.state_dir).resolve()

    def path(self, relative: str) -> Path:
        """A project path given relative to the project root."""
        return (self.root / relative).resolve()

    @property
    def registry_backend(self) -> str:
        """``mlflow`` when configured (``registry.backend`` or ``$CDL_REGISTRY``), else the
        profile's own registry: ``local`` or ``determined``."""
        backend = os.environ.get(REGISTRY_ENV) or self.config.registry.backend
        if backend not in REGISTRY_BACKENDS:
            raise ConfigError(
                f"{REGISTRY_ENV}={backend!r}: use one of {', '.join(REGISTRY_BACKENDS)}"
            )
        if backend == "mlflow":
            return "mlflow"
        return "determined" if self.profile == "cluster" else "local"

    @property
    def data_mirror(self) -> str:
        return os.environ.get("CDL_DATA_MIRROR") or self.config.data.mirror

    @property
    def source_sha256(self) -> str:
        """``$CDL_DATA_SHA256`` if set (even empty: unchecked), else ``data.source_sha256``:
        a mirror holding other data than the pinned source names its own hash."""
        return os.environ.get("CDL_DATA_SHA256", self.config.data.source_sha256).strip().lower()

    @property
    def determined_master(self) -> str:
        return os.environ.get("DET_MASTER") or self.config.cluster.determined_master

    @property
    def pachyderm_address(self) -> str:
        return os.environ.get("PACHD_ADDRESS") or self.config.cluster.pachyderm_address

    @property
    def determined_namespace(self) -> str:
        """Namespace of Determined's trial pods (``cluster.determined_namespace``)."""
        cluster = self.config.cluster
        return cluster.determined_namespace or cluster.namespace

    @property
    def pachyderm_namespace(self) -> str:
        """Namespace of Pachyderm's pipeline pods (``cluster.pachyderm_namespace``)."""
        cluster = self.config.cluster
        return cluster.pachyderm_namespace or cluster.namespace

    def deploy_branch(self, environment: str) -> str | None:
        """The branch that deploys to ``environment``: ``$CDL_STAGING_BRANCH`` or
        ``$CDL_PRODUCTION_BRANCH``, which the deployment component sets from its
        ``staging_branch`` / ``production_branch`` inputs; None when unset."""
        return os.environ.get(f"CDL_{environment.upper()}_BRANCH") or None

    def secret(self, env_name: str, purpose: str) -> str:
        """The value of the environment variable ``env_name``, or a clear error."""
        value = os.environ.get(env_name)
        if not value:
            raise ConfigError(
                f"{purpose} needs the environment variable {env_name} "
                "(set it as a masked CI/CD variable or export it locally)"
            )
        return value


def _format_error(source: str, error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key (check its spelling and indentation)"
        lines.append(f"{source}: {location}: {message}")
    return "\n".join(lines)


def parse_config(text: str, source: str = CONFIG_FILE) -> ProjectConfig:
    """Parse and validate the text of a ``cdl.yaml``."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of settings at the top level")
    try:
        return ProjectConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_error(source, exc)) from exc


def find_config(start: Path | None = None) -> Path:
    """``$CDL_CONFIG``, or the nearest ``cdl.yaml`` from ``start`` upwards."""
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"{CONFIG_ENV}={explicit}: no such file")
        return path.resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_FILE
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"no {CONFIG_FILE} found in {here} or its parents: run cdl inside a CDL project "
        f"or set {CONFIG_ENV}"
    )


def resolve_profile(config: ProjectConfig, override: str | None = None) -> Profile:
    """The profile in force: ``override`` (``--profile``), else ``$CDL_PROFILE``, else the file."""
    for origin, value in (("--profile", override), (PROFILE_ENV, os.environ.get(PROFILE_ENV))):
        if value:
            if value not in ("local", "cluster"):
                raise ConfigError(f"{origin}: unknown profile {value!r} (use local or cluster)")
            return value  # type: ignore[return-value]
    return config.profile


def load_settings(path: Path | None = None, profile: str | None = None) -> Settings:
    """Find, read and validate ``cdl.yaml`` and pick the profile."""
    config_path = path.resolve() if path else find_config()
    try:
        text = config_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {config_path}: {exc.strerror}") from exc
    config = parse_config(text, source=str(config_path))
    return Settings(config, config_path.parent, resolve_profile(config, profile))
