"""The trial on the cluster, against a fake master that runs its entrypoint (issue 17, items
1, 2, 3 and 5): image pinned by digest, the context without environments, the trial's
endpoints, unvalidated checkpoints and every terminal state."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from model_fixtures import render_tree, write_config

from cdl_gitlab.config import load_settings
from cdl_gitlab.model.cluster import ClusterError, register_best_checkpoint, submit_experiment
from cdl_gitlab.model.context_size import ContextTooLargeError, check_context, context_size
from cdl_gitlab.model.trial_environment import TrialEnvironmentError, without_secrets
from cdl_gitlab.model.trial_secrets import TrialSecretsError
from cdl_gitlab.registry.determined_backend import connect
from fakes.determined_master import TRAIN_IMAGE, TRIAL_DSN, FakeDeterminedMaster, trial_endpoints
from fakes.kubectl import (
    AppliedSecrets,
    applied,
    install_fake_kubectl,
    kubectl_calls,
    secret_values,
)

NEEDS_ENDPOINTS = """\
import os
import sys
from pathlib import Path

from cdl_gitlab.config import load_settings  # the training image has cdl-gitlab

settings = load_settings(Path("cdl.yaml"))
dsn = settings.config.cluster.postgres_dsn_env
for name in ("CDL_PROFILE", dsn, "PACHD_ADDRESS"):
    if not os.environ.get(name):
        sys.exit(f"trial: {name} is not set")
print("trial: endpoints", os.environ["PACHD_ADDRESS"], os.environ["CDL_PROFILE"])
"""


@pytest.fixture
def project(tmp_path: Path, det_master: FakeDeterminedMaster, monkeypatch) -> Path:
    """A rendered project (cdl.yaml, model/, .detignore) pointed at the fake master."""
    for name in ("CDL_PROFILE", "CDL_CONFIG", "CDL_TRAIN_IMAGE", "PACHD_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "project"
    root.mkdir()
    write_config(root, "pytorch", "text", 0.5)
    render_tree(
        "model",
        root,
        {
            "project_slug": "tiny-text",
            "model_name": "tiny-text",
            "framework": "pytorch",
            "task": "text",
        },
    )
    monkeypatch.setenv("DET_MASTER", det_master.url)
    return root


def _settings(root: Path):
    return load_settings(root / "cdl.yaml", profile="cluster")


def _submit(root: Path, config: str = "model/const.yaml", echo=lambda line: None, **kwargs):
    return submit_experiment(
        _settings(root), root / config, root, poll_interval=0.01, echo=echo, **kwargs
    )


def test_config_from_git_fails_to_import_in_the_default_image(
    project: Path, det_master: FakeDeterminedMaster
) -> None:
    """Item 1: the rendered config has no environment.image, so the trial runs in Determined's
    default image and cannot import cdl_gitlab (sent straight through the SDK, as before)."""
    config = yaml.safe_load((project / "model/const.yaml").read_text())
    assert "image" not in config["environment"]
    det = connect(det_master.url)
    experiment = det.create_experiment(config, model_dir=str(project))
    run = det_master.trial_run(experiment.id)
    assert run.returncode != 0
    assert "No module named 'cdl_gitlab'" in run.output, run.output
    assert experiment.wait(interval=0.01).value == "STATE_ERROR"


def test_submission_needs_an_image_pinned_by_digest(
    project: Path, det_master: FakeDeterminedMaster, monkeypatch
) -> None:
    trial_endpoints(monkeypatch)
    monkeypatch.delenv("CDL_TRAIN_IMAGE")
    with pytest.raises(TrialEnvironmentError, match=r"no training image.*CDL_TRAIN_IMAGE"):
        _submit(project)
    monkeypatch.setenv("CDL_TRAIN_IMAGE", "registry.example.org/group/project/train:0123abc")
    with pytest.raises(TrialEnvironmentError, match="must be pinned by digest"):
        _submit(project)
    assert det_master.calls("POST", "/api/v1/experiments") == []


def test_trial_gets_image_endpoints_and_pull_secret_never_in_git(
    project: Path, det_master: FakeDeterminedMaster, monkeypatch
) -> None:
    """Items 1 and 3: the image by digest, the DSN, PACHD_ADDRESS (cdl.yaml leaves it empty),
    the Pachyderm token and the pull secret reach the trial; the file in git is unchanged."""
    trial_endpoints(monkeypatch, pachd_address="pachd.cluster.local:30650")
    monkeypatch.setenv("PACH_PYTHON_AUTH_TOKEN", "pach-token-1")
    config_file = project / "cdl.yaml"
    config_file.write_text(
        config_file.read_text() + "cluster: {image_pull_secret: gitlab-registry}\n"
    )
    (project / "model/needs_endpoints.py").write_text(NEEDS_ENDPOINTS)
    config = yaml.safe_load((project / "model/const.yaml").read_text())
    config["entrypoint"] = "python3 -m model.needs_endpoints"
    (project / "model/endpoints.yaml").write_text(yaml.safe_dump(config))
    before = (project / "model/endpoints.yaml").read_text()

    experiment_id = _submit(project, "model/endpoints.yaml")

    run = det_master.trial_run(experiment_id)
    assert run.returncode == 0, run.output
    assert "trial: endpoints pachd.cluster.local:30650 cluster" in run.output
    assert run.env["CDL_POSTGRES_DSN"] == TRIAL_DSN
    assert run.env["PACH_PYTHON_AUTH_TOKEN"] == "pach-token-1"
    sent = det_master.state.experiments[experiment_id]["config"]["environment"]
    assert sent["image"] == {"cpu": TRAIN_IMAGE, "cuda": TRAIN_IMAGE}
    assert sent["pod_spec"] == {"spec": {"imagePullSecrets": [{"name": "gitlab-registry"}]}}
    assert (project / "model/endpoints.yaml").read_text() == before
    # what the registry keeps of the master's config has no secret values
    kept = without_secrets(_settings(project), {"environment": sent})
    assert kept["environment"]["environment_variables"] == [
        "CDL_PROFILE=cluster",
        "PACHD_ADDRESS=pachd.cluster.local:30650",
    ]


def test_trial_without_its_endpoints_fails_on_the_cluster(
    project: Path, det_master: FakeDeterminedMaster, monkeypatch
) -> None:
    """Item 3, the fake's side: the config from git (CDL_PROFILE only) fails in the trial."""
    (project / "model/needs_endpoints.py").write_text(NEEDS_ENDPOINTS)
    config = yaml.safe_load((project / "model/const.yaml").read_text())
    config["entrypoint"] = "python3 -m model.needs_endpoints"
    config["environment"]["image"] = TRAIN_IMAGE
    det = connect(det_master.url)
    experiment = det.create_experiment(config, model_dir=str(project))
    run = det_master.trial_run(experiment.id)
    assert "trial: CDL_POSTGRES_DSN is not set" in run.output
    # and CDL refuses to submit without them
    monkeypatch.setenv("CDL_TRAIN_IMAGE", TRAIN_IMAGE)
    with pytest.raises(TrialEnvironmentError, match="PACHD_ADDRESS"):
        _submit(project)
    monkeypatch.setenv("PACHD_ADDRESS", "pachd.cluster.local:30650")
    with pytest.raises(TrialEnvironmentError, match="set CDL_POSTGRES_DSN"):
        _submit(project)
    assert len(det_master.calls("POST", "/api/v1/experiments")) == 1  # the direct one


def _sparse(path: Path, size: int) -> None:
    """A file of ``size`` bytes that takes no disk space (the check reads sizes only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        handle.truncate(size)


def test_ci_virtualenv_and_caches_stay_out_of_the_context(
    project: Path, det_master: FakeDeterminedMaster, monkeypatch
) -> None:
    """Item 2: the pip path's .cdl-venv/<job id> (with torch in it), pip's cache, a local
    .venv and the state folder are not uploaded."""
    trial_endpoints(monkeypatch)
    for name in (
        ".cdl-venv/4711/lib/python3.11/site-packages/torch/lib/libtorch_cpu.so",
        ".venv-cpu/lib/python3.11/site-packages/torch/lib/libtorch_cpu.so",
        ".cache/pip/http-v2/a/b/c/wheel",
        ".cdl/checkpoints/ck-1/model_state.pt",
        "data/labels/export.json",
    ):
        _sparse(project / name, 200 * 1024 * 1024)
    (project / "model/__pycache__").mkdir(exist_ok=True)
    (project / "model/__pycache__/x.cpython-311.pyc").write_bytes(b"\0" * 10)
    size = check_context(project)
    assert size.total < 1024 * 1024, size.by_entry
    assert set(size.by_entry) == {"cdl.yaml", "model/"}

    (project / "model/ok.py").write_text("print('trained')\n")
    experiment_id = _submit(project, overrides={"entrypoint": "python3 -m model.ok"})
    files = det_master.state.experiment_files[experiment_id]
    assert {name.split("/")[0] for name in files} == {"cdl.yaml", "model"}


def test_an_oversized_context_is_refused_before_upload(
    project: Path, det_master: FakeDeterminedMaster, monkeypatch
) -> None:
    """Item 2: a big environment under a name .detignore does not know is named in a clear
    error and nothing is submitted."""
    trial_endpoints(monkeypatch)
    _sparse(project / "my-env/lib/libtorch_cpu.so", 300 * 1024 * 1024)
    _sparse(project / "model/weights.bin", 2 * 1024 * 1024)
    with pytest.raises(ContextTooLargeError, match=r"largest entries: my-env/ 300\.0 MB") as exc:
        _submit(project)
    assert ".detignore" in str(exc.value) and "95.0 MB" in str(exc.value)
    assert det_master.calls("POST", "/api/v1/experiments") == []
    assert context_size(project).by_entry["model/"] > 2 * 1024 * 1024


def test_the_sdks_own_refusal_is_a_domain_error(
    project: Path, det_master: FakeDeterminedMaster, monkeypatch
) -> None:
    """Item 2: the SDK's own ValueError (its size limit, here made smaller than the context)
    becomes a ClusterError, not a traceback."""
    trial_endpoints(monkeypatch)
    monkeypatch.setattr("cdl_gitlab.model.context_size.context_limit", lambda: 10**9)
    from determined.common import context

    monkeypatch.setattr(context.read_v1_context, "__defaults__", ((), 10))
    with pytest.raises(ClusterError, match="the model context: The total size"):
        _submit(project)
    assert det_master.calls("POST", "/api/v1/experiments") == []


def test_the_fake_master_refuses_an_oversized_context(
    project: Path, det_master: FakeDeterminedMaster
) -> None:
    from determined.common.api import errors

    det_master.context_limit = 100
    config = yaml.safe_load((project / "model/const.yaml").read_text())
    det = connect(det_master.url)
    with pytest.raises(errors.APIException, match="model definition is"):
        det.create_experiment(config, model_dir=str(project))


@pytest.mark.parametrize(
    "end",
    ["STATE_ERROR", "STATE_CANCELED", "STATE_DELETED", "STATE_DELETING", "STATE_DELETE_FAILED"],
)
def test_every_terminal_state_ends_the_wait_with_a_clear_failure(
    project: Path, det_master: FakeDeterminedMaster, monkeypatch, end: str
) -> None:
    """Item 5: the wait loop ends on each terminal state the master has (DELETE_FAILED was
    missing: it polled forever) and says what happened."""
    trial_endpoints(monkeypatch)
    (project / "model/ok.py").write_text("print('trained')\n")
    config = yaml.safe_load((project / "model/const.yaml").read_text())
    config["entrypoint"] = "python3 -m model.ok"
    (project / "model/ok.yaml").write_text(yaml.safe_dump(config))
    det_master.experiment_states = ["STATE_ACTIVE", "STATE_STOPPING_ERROR", end]
    state = end.removeprefix("STATE_")
    with pytest.raises(ClusterError, match=rf"ended {state}: it "):
        _submit(project, "model/ok.yaml", timeout=30)
    det_master.experiment_states = ["STATE_ACTIVE", "STATE_COMPLETED"]
    assert _submit(project, "model/ok.yaml", timeout=30) > 0


def test_an_unvalidated_checkpoint_is_never_registered_as_best(
    project: Path, det_master: FakeDeterminedMaster, monkeypatch
) -> None:
    """Item 5: the master keeps checkpoints without validation metrics and sorts them last;
    when only those exist, "best" is one of them and CDL registers nothing."""
    trial_endpoints(monkeypatch)
    (project / "model/ok.py").write_text("print('trained')\n")
    config = yaml.safe_load((project / "model/const.yaml").read_text())
    config["entrypoint"] = "python3 -m model.ok"
    (project / "model/ok.yaml").write_text(yaml.safe_dump(config))
    experiment_id = _submit(project, "model/ok.yaml")
    trial = experiment_id * 100 + 1
    det_master.add_checkpoint("unvalidated", {"cdl_model.json": b"{}"}, experiment_id, trial)
    with pytest.raises(ClusterError, match="best one, unvalidated, was never validated"):
        register_best_checkpoint(_settings(project), experiment_id, config, echo=print)
    assert det_master.calls("POST", "/api/v1/models") == []
    assert det_master.calls("GET", "/checkpoints/unvalidated") == []
    # a validated one comes first, before the unvalidated one
    det_master.add_checkpoint(
        "validated", {}, experiment_id, trial, validation={"validation_accuracy": 0.2}
    )
    det = connect(det_master.url)
    ranked = det.get_experiment(experiment_id).list_checkpoints()
    assert [c.uuid for c in ranked] == ["validated", "unvalidated"]


def test_rendered_detignore_keeps_the_ci_job_files_out(project: Path) -> None:
    """The template's .detignore names what the CI jobs leave in $CI_PROJECT_DIR."""
    text = (project / ".detignore").read_text()
    for pattern in (".cdl-venv/", ".cache/", ".cdl/", ".venv*/", "/image-digest.txt"):
        assert pattern in text.splitlines()


def test_secrets_by_reference_to_a_kubernetes_secret(
    project: Path, det_master: FakeDeterminedMaster, monkeypatch, tmp_path: Path
) -> None:
    """Item 3 with cluster.trial_secret: submission creates the Kubernetes Secret from the
    job's environment (kubectl's stdin), the DSN reaches the trial from it (pod spec
    secretKeyRef); no secret value is sent to the master."""
    trial_endpoints(monkeypatch)
    kubectl_log = install_fake_kubectl(tmp_path, monkeypatch)
    det_master.kube_secrets = AppliedSecrets(kubectl_log)  # the cluster the trials run on
    config_file = project / "cdl.yaml"
    config_file.write_text(
        config_file.read_text()
        + "cluster: {trial_secret: cdl-trial, image_pull_secret: train-pull, namespace: det}\n"
    )
    monkeypatch.setenv("CI_DEPLOY_USER", "gitlab+deploy-token-1")
    monkeypatch.setenv("CI_DEPLOY_PASSWORD", "gldt-deploy-pw")
    (project / "model/needs_endpoints.py").write_text(NEEDS_ENDPOINTS)
    overrides = {"entrypoint": "python3 -m model.needs_endpoints"}
    lines: list[str] = []

    experiment_id = _submit(project, echo=lines.append, overrides=overrides, wait=False)
    secret, pull = applied(kubectl_log)  # before the experiment was created
    assert secret["metadata"]["name"] == "cdl-trial" and secret["metadata"]["namespace"] == "det"
    assert secret_values(secret) == {"CDL_POSTGRES_DSN": TRIAL_DSN}
    assert pull["metadata"]["name"] == "train-pull" and pull["metadata"]["namespace"] == "det"
    assert lines[:2] == [
        "secret/cdl-trial configured in namespace det (keys CDL_POSTGRES_DSN)",
        "secret/train-pull configured in namespace det",
    ]
    assert not any(TRIAL_DSN in line or "gldt-deploy-pw" in line for line in lines)

    run = det_master.trial_run(experiment_id)
    assert run.returncode == 0, run.output
    assert run.env["CDL_POSTGRES_DSN"] == TRIAL_DSN
    (create,) = [r for r in det_master.requests if r.path == "/api/v1/experiments"]
    assert TRIAL_DSN not in create.json["config"]
    sent = yaml.safe_load(create.json["config"])["environment"]
    (container,) = sent["pod_spec"]["spec"]["containers"]
    assert container["name"] == "determined-container"
    assert container["env"][0] == {
        "name": "CDL_POSTGRES_DSN",
        "valueFrom": {"secretKeyRef": {"name": "cdl-trial", "key": "CDL_POSTGRES_DSN"}},
    }
    # without the DSN in the job, the Secret on the cluster serves
    monkeypatch.delenv("CDL_POSTGRES_DSN")
    assert _submit(project, overrides=overrides) == experiment_id + 1
    assert [s["metadata"]["name"] for s in applied(kubectl_log)] == [
        "cdl-trial",
        "train-pull",
        "train-pull",
    ]
    # neither the DSN nor the Secret: refused before anything reaches the master
    kubectl_log.unlink()
    with pytest.raises(TrialSecretsError, match=r"cdl-trial .* does not exist in namespace det"):
        _submit(project, overrides=overrides)
    assert len(det_master.calls("POST", "/api/v1/experiments")) == 2
    # without kubectl access the Secrets are neither made nor checked: the submission says so,
    # and the trial, whose Secret is missing, cannot start (the master's verdict)
    monkeypatch.delenv("KUBECONFIG_B64")
    kubectl_log.unlink()
    lines.clear()
    with pytest.raises(ClusterError, match="ended ERROR"):
        _submit(project, echo=lines.append, overrides=overrides)
    assert lines[0] == (
        "the trials' Secrets cdl-trial, train-pull in namespace det are neither created nor "
        "checked (no kubectl access: KUBECONFIG or KUBECONFIG_B64 is not set): they must "
        "exist there"
    )
    assert kubectl_calls(kubectl_log) == []


def test_the_fake_master_refuses_what_the_determined_container_owns(
    project: Path, det_master: FakeDeterminedMaster
) -> None:
    from determined.common.api import errors

    config = yaml.safe_load((project / "model/const.yaml").read_text())
    config["environment"]["pod_spec"] = {
        "spec": {"containers": [{"name": "determined-container", "image": "python:3.11"}]}
    }
    det = connect(det_master.url)
    with pytest.raises(errors.APIException, match="container image is not configurable"):
        det.create_experiment(config, model_dir=str(project / "model"))


def test_a_failed_trial_shows_its_log_in_the_error(
    project: Path, det_master: FakeDeterminedMaster, monkeypatch
) -> None:
    """A trial that fails on the cluster: the job's error ends with the trial's last lines."""
    trial_endpoints(monkeypatch)
    (project / "model/broken.py").write_text(
        "import cdl_gitlab\nraise RuntimeError('trial: cannot find the data')\n"
    )
    with pytest.raises(ClusterError) as failed:
        _submit(project, overrides={"entrypoint": "python3 -m model.broken"})
    message = str(failed.value)
    assert "ended ERROR" in message
    assert "log:\n" in message and message.endswith("RuntimeError: trial: cannot find the data")


REPORTS = """\
import json
from pathlib import Path

import determined as det

info = det.get_cluster_info()
assert info is not None and info.task_type == "TRIAL", "not on the cluster"
print("trial: working dir", Path.cwd(), "hparams", json.dumps(info.trial.hparams))
with det.core.init() as core:
    for steps, accuracy in ((10, 0.25), (20, 0.75)):
        core.train.report_validation_metrics(steps, {"validation_accuracy": accuracy})
        with core.checkpoint.store_path({"steps_completed": steps}) as (path, uuid):
            (path / "cdl_model.json").write_text(json.dumps({"steps": steps}))
        print("trial: stored", uuid, "in", path)
"""


def test_the_trial_runs_on_the_cluster_and_reports_its_checkpoints(
    project: Path, det_master: FakeDeterminedMaster, monkeypatch, tmp_path: Path
) -> None:
    """The fake runs the trial as a trial pod does: the SDK sees the cluster (info files),
    metrics and checkpoints reach the master; checkpoints are stored outside the working dir,
    ranked by their validation and downloaded through the master (registering the best one
    and loading it: tests/ci/test_cluster_sequence.py)."""
    from determined.experimental.client import DownloadMode

    trial_endpoints(monkeypatch)
    (project / "model/reports.py").write_text(REPORTS)
    experiment_id = _submit(project, overrides={"entrypoint": "python3 -m model.reports"})

    run = det_master.trial_run(experiment_id)
    assert run.returncode == 0, run.output
    assert "trial: working dir /run/determined/workdir hparams" in run.output
    assert '"learning_rate": 0.001' in run.output  # the resolved hyperparameters
    det = connect(det_master.url)
    ranked = det.get_experiment(experiment_id).list_checkpoints()
    assert [c.metadata["steps_completed"] for c in ranked] == [20, 10]
    storage = ranked[0].training.experiment_config["checkpoint_storage"]
    assert storage == {"type": "directory", "container_path": str(det_master.storage_root)}
    ranked[0].download(str(tmp_path / "best"), mode=DownloadMode.MASTER)
    assert (tmp_path / "best/cdl_model.json").read_text() == '{"steps": 20}'
    assert det_master.calls("GET", f"/checkpoints/{ranked[0].uuid}")
