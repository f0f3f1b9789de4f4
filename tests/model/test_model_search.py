"""Local HP search: Optuna over the Determined space with successive-halving pruning; every
trial recorded; the best configuration written as a trainable single-trial config."""

from __future__ import annotations

import yaml

from cdl_gitlab.model.expconf import const_hparams, load_experiment_config, training_length
from cdl_gitlab.model.search import search_local
from cdl_gitlab.registry import open_registry
from cdl_gitlab.tracking import open_experiment_registry


def test_search_prunes_records_every_trial_and_writes_best_config(project_factory) -> None:
    settings = project_factory("pytorch", "text")
    config = settings.path("model/adaptive.yaml")
    conf = yaml.safe_load(config.read_text())
    conf["hyperparameters"] = {
        "global_batch_size": 16,
        "vocab_size": 60,
        "hidden1": {"type": "int", "minval": 8, "maxval": 32},
        "hidden2": 16,
        "hidden3": 8,
        "hidden4": 8,
        "dropout": {"type": "double", "minval": 0.0, "maxval": 0.3},
        # one hopeless and one good learning rate, so the pruner has work to do
        "learning_rate": {"type": "categorical", "vals": [1.0e-7, 0.01]},
        "batches": 24,
        "validation_batches": 6,
    }
    conf["searcher"].update(
        {
            "max_trials": 6,
            "max_time": 24,
            "time_metric": "batches",
            "divisor": 2,
            "max_rungs": 3,
            "mode": "aggressive",
        }
    )
    config.write_text(yaml.safe_dump(conf))

    result = search_local(settings, config, register=True)

    experiment = open_experiment_registry(settings).get_experiment(result.experiment_id)
    assert experiment.state == "COMPLETED" and len(experiment.trials) == 6
    states = [trial.state for trial in experiment.trials]
    assert set(states) <= {"COMPLETED", "PRUNED"} and "PRUNED" in states
    assert sum(result.trials.values()) == 6 and result.trials.get("PRUNED") == states.count(
        "PRUNED"
    )
    for trial in experiment.trials:
        steps = [report.steps_completed for report in trial.metrics["validation"]]
        assert steps == sorted(steps) and steps[0] == 6
        if trial.state == "PRUNED":
            assert steps[-1] < 24
        else:
            assert steps[-1] == 24
        assert trial.checkpoints  # a stopped trial still checkpoints, as on a cluster

    best = experiment.trials[[t.id for t in experiment.trials].index(result.best_trial_id)]
    assert best.state == "COMPLETED"
    assert best.hparams["learning_rate"] == 0.01
    assert result.best_value == best.metrics["validation"][-1].metrics["validation_accuracy"]

    written = load_experiment_config(result.best_config_path)
    assert result.best_config_path == settings.path("model/const.best.yaml")
    assert written["searcher"]["name"] == "single"
    from cdl_gitlab.model.config_lint import lint_paths

    assert lint_paths([result.best_config_path]) == 0
    hparams = const_hparams(written)
    assert hparams == result.best_hparams and training_length(hparams).value == 24

    assert result.version is not None
    lineage = result.version.metadata["lineage"]
    assert lineage["experiment"]["trial_id"] == result.best_trial_id
    assert lineage["cost"]["search_wall_seconds"] >= lineage["cost"]["wall_seconds"] > 0
    assert open_registry(settings).get_version("tiny-text").version == 1
