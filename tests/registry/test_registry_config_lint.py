"""Linting Determined 0.38 experiment configs against the schema shipped in cdl."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cdl_gitlab.model.config_lint import (
    LintIssue,
    experiment_schema,
    lint_config,
    lint_experiment_config,
    lint_paths,
)

CONST = """\
name: news-const
description: BBC news classifier, one trial
entrypoint: python3 -m determined.launch.torch_distributed python3 -m model.train
hyperparameters:
  global_batch_size: 32
  learning_rate: 0.001
  dropout: {type: const, val: 0.2}
  model:
    hidden_size: 128
    activation: relu
searcher:
  name: single
  metric: validation_loss
  smaller_is_better: true
max_restarts: 0
checkpoint_policy: best
checkpoint_storage:
  type: shared_fs
  host_path: /tmp/checkpoints
  save_trial_best: 1
  save_trial_latest: 1
resources: {slots_per_trial: 1}
labels: [news, pytorch]
data: {repo: news-train-validate, branch: master}
environment:
  image: {cpu: "determinedai/pytorch-ngc-dev:0.38.1", cuda: "determinedai/pytorch-ngc:0.38.1"}
  environment_variables: ["OMP_NUM_THREADS=1"]
reproducibility: {experiment_seed: 42}
workspace: CDL
project: news
log_policies:
  - name: CUDA OOM
    pattern: ".*CUDA out of memory.*"
    action: cancel_retries
"""

ADAPTIVE = """\
name: news-search
entrypoint: python3 train.py
hyperparameters:
  global_batch_size: 32
  learning_rate: {type: log, minval: -4, maxval: -1, base: 10}
  hidden_size: {type: int, minval: 32, maxval: 256}
  dropout: {type: double, minval: 0.0, maxval: 0.5}
  optimizer: {type: categorical, vals: [adam, sgd]}
  nested:
    momentum: {type: double, minval: 0.8, maxval: 0.99}
searcher:
  name: adaptive_asha
  metric: validation_accuracy
  smaller_is_better: false
  max_trials: 16
  max_concurrent_trials: 4
  max_time: 1000
  time_metric: batches
  mode: standard
  max_rungs: 4
  divisor: 4
"""

DISTRIBUTED = """\
name: news-distributed
entrypoint: [python3, -m, determined.launch.torch_distributed, python3, train.py]
hyperparameters: {global_batch_size: 64, learning_rate: 0.001}
searcher: {name: single, metric: validation_loss}
resources: {slots_per_trial: 4, resource_pool: gpu-pool, shm_size: 4294967296}
bind_mounts:
  - {host_path: /datasets, container_path: /data, read_only: true}
optimizations: {average_training_metrics: true}
profiling: {enabled: true}
"""


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def _paths(issues: list[LintIssue]) -> dict[str, str]:
    return {issue.path: issue.kind for issue in issues}


def test_schema_is_valid_draft7() -> None:
    from jsonschema import Draft7Validator

    Draft7Validator.check_schema(experiment_schema())


@pytest.mark.parametrize("text", [CONST, ADAPTIVE, DISTRIBUTED], ids=["const", "adaptive", "dist"])
def test_current_configs_pass(tmp_path: Path, text: str) -> None:
    assert lint_experiment_config(_write(tmp_path, "exp.yaml", text)) == []


def test_unknown_key_wrong_type_and_deprecated_keys_name_the_path(tmp_path: Path) -> None:
    config = yaml.safe_load(ADAPTIVE)
    config["searcher"]["max_trails"] = 4  # typo
    config["searcher"]["max_concurrent_trials"] = "four"
    config["resources"] = {"slots_per_trial": 2.5}
    config["bind_mounts"] = [{"host_path": "/a", "container_path": "/b", "readonly": True}]
    config["min_validation_period"] = {"batches": 100}
    config["records_per_epoch"] = 5000
    config["searcher"]["max_length"] = {"batches": 1000}
    issues = lint_config(config, "adaptive.yaml")
    assert _paths(issues) == {
        "searcher.max_trails": "unknown",
        "searcher.max_concurrent_trials": "type",
        "resources.slots_per_trial": "type",
        "bind_mounts[0].readonly": "unknown",
        "min_validation_period": "deprecated",
        "records_per_epoch": "deprecated",
        "searcher.max_length": "deprecated",
    }
    messages = {issue.path: str(issue) for issue in issues}
    assert (
        "adaptive.yaml: error: searcher.max_trails: unknown key" in messages["searcher.max_trails"]
    )
    assert "max_time" in messages["searcher.max_length"]  # says what to use instead
    assert "validation_period" in messages["min_validation_period"]


def test_single_searcher_max_length_points_to_code(tmp_path: Path) -> None:
    config = yaml.safe_load(CONST)
    config["searcher"]["max_length"] = {"batches": 100}
    (issue,) = lint_config(config)
    assert issue.path == "searcher.max_length" and "Trainer.fit(max_length" in issue.message
    del config["searcher"]["max_length"]
    config["searcher"]["max_trials"] = 1  # not a key of the single searcher
    (issue,) = lint_config(config)
    assert issue.path == "searcher.max_trials" and "'single' searcher" in issue.message


def test_removed_searcher_and_required_fields() -> None:
    config = yaml.safe_load(CONST)
    config["searcher"] = {"name": "custom", "metric": "loss"}
    assert _paths(lint_config(config)) == {"searcher.name": "deprecated"}
    config["searcher"] = {"name": "adaptive_asha", "metric": "loss"}
    messages = [issue.message for issue in lint_config(config)]
    assert any("'max_trials' is a required property" in m for m in messages)
    del config["entrypoint"]
    assert any(i.path == "" and "'entrypoint'" in i.message for i in lint_config(config))


def test_hyperparameter_specs_are_checked() -> None:
    config = yaml.safe_load(ADAPTIVE)
    config["hyperparameters"]["hidden_size"] = {"type": "int", "minval": 300, "maxval": 32}
    config["hyperparameters"]["optimizer"] = {"type": "categorical", "values": ["adam"]}
    config["hyperparameters"]["nested"]["momentum"] = {"type": "float", "minval": 0.1}
    paths = _paths(lint_config(config))
    assert paths["hyperparameters.hidden_size.minval"] == "invalid"
    assert paths["hyperparameters.optimizer.values"] == "unknown"
    assert paths["hyperparameters.nested.momentum.type"] == "invalid"
    config = yaml.safe_load(ADAPTIVE)
    config["searcher"] = {"name": "grid", "metric": "loss"}
    paths = _paths(lint_config(config))
    assert paths["hyperparameters.hidden_size.count"] == "invalid"


def test_keras_trial_class_entrypoint_is_deprecated(tmp_path: Path) -> None:
    (tmp_path / "model_def.py").write_text(
        "from determined import keras\n\nclass NewsTrial(keras.TFKerasTrial):\n    pass\n"
    )
    (tmp_path / "torch_def.py").write_text("class TorchTrial(PyTorchTrial):\n    pass\n")
    config = yaml.safe_load(CONST)
    config["entrypoint"] = "model_def:NewsTrial"
    path = _write(tmp_path, "keras.yaml", yaml.safe_dump(config))
    (issue,) = lint_experiment_config(path)
    assert (issue.path, issue.kind) == ("entrypoint", "deprecated")
    assert "DeterminedCallback" in issue.message
    config["entrypoint"] = "torch_def:TorchTrial"
    assert lint_experiment_config(_write(tmp_path, "torch.yaml", yaml.safe_dump(config))) == []
    config["entrypoint"] = "missing_mod:Trial"
    (warning,) = lint_experiment_config(_write(tmp_path, "missing.yaml", yaml.safe_dump(config)))
    assert warning.severity == "warning"


def test_lint_paths_prints_and_returns_exit_code(tmp_path: Path, capsys) -> None:
    good = _write(tmp_path, "const.yaml", CONST)
    bad = _write(tmp_path, "bad.yaml", CONST + "min_checkpoint_period: {batches: 5}\n")
    broken = _write(tmp_path, "broken.yaml", "searcher: [unclosed\n")
    assert lint_paths([good]) == 0
    assert capsys.readouterr().out == f"{good}: ok\n"
    assert lint_paths([good, bad, broken]) == 1
    out = capsys.readouterr().out
    assert f"{bad}: error: min_checkpoint_period: deprecated" in out
    assert f"{broken}: error: (top level): not valid YAML" in out
    assert f"{bad}: 1 error(s)" in out


def test_environment_keys_follow_the_masters_schema() -> None:
    """environment has ports (and no slurm/pbs: those are top-level, ignored on Kubernetes);
    the determined-container's image and probes are the master's."""
    config = yaml.safe_load(ADAPTIVE)
    config["environment"] = {
        "ports": {"tensorboard": 6006},
        "proxy_ports": [{"proxy_port": 8888, "default_service_id": True}],
        "pod_spec": {
            "spec": {
                "imagePullSecrets": [{"name": "registry"}],
                "containers": [
                    {
                        "name": "determined-container",
                        "env": [
                            {
                                "name": "CDL_POSTGRES_DSN",
                                "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}},
                            }
                        ],
                    }
                ],
            }
        },
    }
    assert lint_config(config) == []
    config["environment"]["slurm"] = ["--time=05:00"]
    config["environment"]["pbs"] = ["-l walltime=1:00:00"]
    config["environment"]["pod_spec"]["spec"]["containers"][0]["image"] = "python:3.11"
    config["environment"]["pod_spec"]["spec"]["containers"][0]["readinessProbe"] = {}
    config["slurm"] = {"sbatch_args": ["--time=05:00"]}
    issues = {issue.path: issue for issue in lint_config(config)}
    assert issues["environment.slurm"].kind == "unknown"
    assert issues["environment.pbs"].kind == "unknown"
    image = issues["environment.pod_spec.spec.containers[0].image"]
    assert image.severity == "error" and "set environment.image" in image.message
    assert "environment.pod_spec.spec.containers[0].readinessProbe" in issues
    assert issues["slurm"].severity == "warning"
    assert "Kubernetes resource manager" in issues["slurm"].message
