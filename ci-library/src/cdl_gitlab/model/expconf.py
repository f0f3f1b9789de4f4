"""Reading Determined experiment configs (``model/*.yaml``) the way the trial needs them."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from cdl_gitlab.errors import CDLError

SEARCH_TYPES = ("int", "double", "log", "categorical")


class ExperimentConfigError(CDLError):
    """An experiment config cannot drive a run."""


@dataclass(frozen=True)
class TrainLength:
    """A training length in Determined's units."""

    unit: Literal["batches", "epochs"]
    value: int

    def __str__(self) -> str:
        return f"{self.value} {self.unit}"


def load_experiment_config(path: Path) -> dict[str, Any]:
    """Parse an experiment config file into a mapping."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ExperimentConfigError(f"cannot read experiment config {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ExperimentConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ExperimentConfigError(f"{path}: expected a mapping at the top level")
    if not isinstance(data.get("hyperparameters", {}), dict):
        raise ExperimentConfigError(f"{path}: hyperparameters: expected a mapping")
    return data


def _const_value(name: str, value: Any) -> Any:
    if isinstance(value, dict):
        kind = value.get("type")
        if kind is None:
            return {key: _const_value(f"{name}.{key}", item) for key, item in value.items()}
        if kind == "const":
            return value["val"]
        raise ExperimentConfigError(
            f"hyperparameters.{name}: a {kind!r} search space needs `cdl model search` "
            "(train with const values, e.g. model/const.yaml or model/const.best.yaml)"
        )
    return value


def const_hparams(exp_conf: dict[str, Any]) -> dict[str, Any]:
    """The hyperparameters of a single-trial config with ``{type: const}`` values resolved."""
    raw = exp_conf.get("hyperparameters") or {}
    return {name: _const_value(name, value) for name, value in raw.items()}


def training_length(hparams: dict[str, Any], max_steps: int | None = None) -> TrainLength:
    """How long a trial trains: ``max_steps`` batches if given, else the ``epochs`` or
    ``batches`` hyperparameter (Determined 0.38 sets the length in the training code; with
    adaptive ASHA it must equal ``searcher.max_time`` in ``searcher.time_metric`` units)."""
    if max_steps is not None:
        if max_steps < 1:
            raise ExperimentConfigError(f"--max-steps must be at least 1 (got {max_steps})")
        return TrainLength("batches", int(max_steps))
    for unit in ("epochs", "batches"):
        if unit in hparams:
            value = int(hparams[unit])
            if value < 1:
                raise ExperimentConfigError(f"hyperparameters.{unit}: must be at least 1")
            return TrainLength(unit, value)  # type: ignore[arg-type]
    raise ExperimentConfigError(
        "hyperparameters: set the training length as `epochs` (or `batches`)"
    )


def searcher_length(exp_conf: dict[str, Any]) -> TrainLength | None:
    """``searcher.max_time`` in ``searcher.time_metric`` units, if the searcher has one."""
    searcher = exp_conf.get("searcher") or {}
    if searcher.get("max_time") is None:
        return None
    unit = searcher.get("time_metric", "batches")
    if unit not in ("batches", "epochs"):
        raise ExperimentConfigError(
            f"searcher.time_metric: use batches or epochs with these trials (got {unit!r})"
        )
    return TrainLength(unit, int(searcher["max_time"]))


def searcher_metric(exp_conf: dict[str, Any]) -> tuple[str, bool]:
    """``(searcher.metric, searcher.smaller_is_better)``."""
    searcher = exp_conf.get("searcher") or {}
    metric = searcher.get("metric")
    if not metric:
        raise ExperimentConfigError("searcher.metric: missing (e.g. validation_loss)")
    return str(metric), bool(searcher.get("smaller_is_better", True))


def data_ref(data_config: dict[str, Any] | None, split: str = "train") -> str | None:
    """``<split>.ref`` of the experiment's ``data`` section: the data version to use."""
    section = (data_config or {}).get(split) or {}
    if not isinstance(section, dict):
        raise ExperimentConfigError(f"data.{split}: expected a mapping with repo and ref")
    ref = section.get("ref")
    return str(ref) if ref not in (None, "") else None


def slots_per_trial(exp_conf: dict[str, Any]) -> int:
    return int((exp_conf.get("resources") or {}).get("slots_per_trial", 1))


def entry_module(exp_conf: dict[str, Any]) -> str:
    """The Python module the ``entrypoint`` runs (after any ``determined.launch`` wrapper)."""
    entrypoint = exp_conf.get("entrypoint")
    if not entrypoint:
        raise ExperimentConfigError("entrypoint: missing (e.g. python3 -m model.model_def)")
    words = shlex.split(entrypoint) if isinstance(entrypoint, str) else list(entrypoint)
    modules = [words[i + 1] for i, word in enumerate(words[:-1]) if word == "-m"]
    modules = [name for name in modules if not name.startswith("determined.launch")]
    if modules:
        return modules[-1]
    scripts = [word for word in words if word.endswith(".py")]
    if scripts:
        return scripts[-1][: -len(".py")].lstrip("./").replace("/", ".")
    raise ExperimentConfigError(
        f"entrypoint: {entrypoint!r} runs no Python module (use python3 -m model.<module>)"
    )
