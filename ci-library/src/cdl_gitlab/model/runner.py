"""Run one trial of the project's model code off-cluster, through the real Determined harness.

PyTorch: ``det.pytorch.init()`` + ``Trainer(trial, context).fit(...)`` on the module's
``PyTorchTrial``. Keras: ``det.core.init(checkpoint_storage=...)`` + the module's
``train(core_context, hparams, data_config, length)`` (``DeterminedCallback`` inside).
Either way the core context is instrumented (:mod:`cdl_gitlab.model.offcluster_context`) so
metrics and checkpoints reach a :class:`~cdl_gitlab.model.offcluster_context.RunListener`.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from cdl_gitlab.config import CONFIG_ENV, PROFILE_ENV, Settings
from cdl_gitlab.errors import CDLError
from cdl_gitlab.model.context_size import ignored
from cdl_gitlab.model.expconf import TrainLength, entry_module
from cdl_gitlab.model.offcluster_context import RunListener, instrument

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunPaths:
    """Where a local run writes: checkpoint storage and its TensorBoard folder."""

    checkpoints: Path
    tensorboard: Path


def run_paths(settings: Settings, experiment_id: int, trial_id: int | None = None) -> RunPaths:
    tensorboard = settings.state_dir / "tensorboard" / str(experiment_id)
    if trial_id is not None:
        tensorboard = tensorboard / f"trial-{trial_id}"
    return RunPaths(settings.state_dir / "checkpoints", tensorboard)


def check_storage_outside_code(root: Path, checkpoints: Path) -> None:
    """Off-cluster, Determined copies the working folder (minus the SDK's ignores and
    ``.detignore``) into every checkpoint as its ``code/``: checkpoint storage inside that
    folder would be copied into itself, deeper at each checkpoint, until the path is too long
    for the file system. Refuse such a run before it starts. A project folder has a
    ``.detignore`` naming the state folder; an uploaded Determined context has none (the SDK
    does not upload it)."""
    root = Path(root).resolve()
    checkpoints = Path(checkpoints).resolve()
    if not checkpoints.is_relative_to(root) or ignored(root, checkpoints):
        return
    relative = checkpoints.relative_to(root)
    raise CDLError(
        f"checkpoint storage {relative}/ is inside {root}, which Determined copies into every "
        f"checkpoint as its code, so each checkpoint would copy the ones before it: add "
        f"/{relative.parts[0]}/ to {root / '.detignore'} (the rendered project's .detignore "
        "lists the state folder .cdl/)"
    )


@contextlib.contextmanager
def project_process(settings: Settings) -> Iterator[None]:
    """Run inside the project: its root as working directory (Determined copies ``.`` minus
    ``.detignore`` into checkpoints as the model code) and first on ``sys.path``, with
    ``CDL_CONFIG``/``CDL_PROFILE`` set so the trial loads the same settings."""
    root = str(settings.root)
    saved = {name: os.environ.get(name) for name in (CONFIG_ENV, PROFILE_ENV)}
    os.environ[CONFIG_ENV] = str(settings.root / "cdl.yaml")
    os.environ[PROFILE_ENV] = settings.profile
    sys.path.insert(0, root)
    try:
        with contextlib.chdir(root):
            yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(root)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def import_entry(settings: Settings, name: str) -> ModuleType:
    """Import the entrypoint module ``name`` from the project (re-importing a same-named module
    of another project, as tests do)."""
    top = name.split(".")[0]
    for loaded in [key for key in sys.modules if key == top or key.startswith(f"{top}.")]:
        file = getattr(sys.modules[loaded], "__file__", None)
        if file is None or not Path(file).resolve().is_relative_to(settings.root):
            del sys.modules[loaded]
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise CDLError(
            f"cannot import the entrypoint module {name!r} from {settings.root}: {exc}"
        ) from exc


def find_trial_class(module: ModuleType) -> type:
    from determined import pytorch

    classes = [
        value
        for value in vars(module).values()
        if inspect.isclass(value)
        and issubclass(value, pytorch.PyTorchTrial)
        and value.__module__ == module.__name__
    ]
    if len(classes) != 1:
        raise CDLError(
            f"{module.__name__} must define exactly one PyTorchTrial subclass "
            f"(found {len(classes)})"
        )
    return classes[0]


def run_trial(
    settings: Settings,
    exp_conf: dict[str, Any],
    hparams: dict[str, Any],
    length: TrainLength,
    listener: RunListener,
    paths: RunPaths,
    seed: int,
) -> None:
    """Train one trial of the project's entrypoint module for ``length``."""
    framework = settings.config.model.framework
    check_storage_outside_code(settings.root, paths.checkpoints)
    with project_process(settings):
        module = import_entry(settings, entry_module(exp_conf))
        if framework == "pytorch":
            _run_pytorch(module, exp_conf, hparams, length, listener, paths, seed)
        else:
            _run_keras(module, exp_conf, hparams, length, listener, paths, seed)


def _run_pytorch(
    module: ModuleType,
    exp_conf: dict[str, Any],
    hparams: dict[str, Any],
    length: TrainLength,
    listener: RunListener,
    paths: RunPaths,
    seed: int,
) -> None:
    from determined import pytorch

    from cdl_gitlab.model.torch_support import (
        reporting_period,
        seed_everything,
        train_unit,
        validation_period,
    )

    trial_class = find_trial_class(module)
    seed_everything(seed)
    with pytorch.init(hparams=hparams, exp_conf=exp_conf) as context:
        # The PyTorch context keeps its core context private; instrument it in place.
        instrument(context._core, listener, paths.checkpoints, paths.tensorboard)
        trial = trial_class(context)
        pytorch.Trainer(trial, context).fit(
            max_length=train_unit(length),
            validation_period=validation_period(hparams),
            reporting_period=reporting_period(),
            checkpoint_policy="none",
        )


def _run_keras(
    module: ModuleType,
    exp_conf: dict[str, Any],
    hparams: dict[str, Any],
    length: TrainLength,
    listener: RunListener,
    paths: RunPaths,
    seed: int,
) -> None:
    import determined as det

    from cdl_gitlab.model.keras_support import seed_everything

    train = getattr(module, "train", None)
    if not callable(train):
        raise CDLError(
            f"{module.__name__} must define train(core_context, hparams, data_config, length)"
        )
    seed_everything(seed)
    with det.core.init(checkpoint_storage=str(paths.checkpoints)) as core_context:
        instrument(core_context, listener, paths.checkpoints, paths.tensorboard)
        train(core_context, hparams, exp_conf.get("data") or {}, length, seed=seed)
