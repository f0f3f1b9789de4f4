"""Off-cluster instrumentation of a Determined core context.

Off-cluster, Determined reports metrics and checkpoints to ``Dummy*Context`` objects that only
log. These subclasses forward the same reports to a :class:`RunListener` (the local experiment
registry, progress output, the HP search's pruner), write TensorBoard files where we say, store
checkpoints under the project's state folder, and let the listener stop a trial the way the
master does on a cluster: through the preemption signal, which both the PyTorch ``Trainer`` and
``DeterminedCallback`` honour (checkpoint, then return).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

from determined import core
from determined.common import storage

logger = logging.getLogger(__name__)


class RunListener(Protocol):
    """Receives what a trial reports while it runs off-cluster."""

    def on_metrics(self, group: str, steps_completed: int, metrics: dict[str, Any]) -> None: ...

    def on_checkpoint(self, uuid: str, path: Path, metadata: dict[str, Any]) -> None: ...

    def should_stop(self) -> bool: ...


class RecordingTrainContext(core.DummyTrainContext):
    """A ``DummyTrainContext`` that forwards metric reports and has a TensorBoard folder."""

    def __init__(self, tensorboard_path: Path, listener: RunListener) -> None:
        super().__init__(tensorboard_path)
        self._listener = listener

    def _report_trial_metrics(
        self,
        group: str,
        steps_completed: int,
        metrics: dict[str, Any],
        batch_metrics: list[dict[str, Any]] | None = None,
    ) -> None:
        self._listener.on_metrics(group, steps_completed, metrics)

    def set_status(self, status: str) -> None:
        logger.debug("trial status: %s", status)

    def report_progress(self, progress: float) -> None:
        logger.debug("trial progress: %.0f%%", 100 * progress)


class RecordingCheckpointContext(core.DummyCheckpointContext):
    """A ``DummyCheckpointContext`` on a shared-fs folder that forwards each stored checkpoint."""

    def __init__(self, dist: core.DistributedContext, base: Path, listener: RunListener) -> None:
        super().__init__(dist, storage.SharedFSStorageManager(str(base)))
        self._base = base
        self._listener = listener

    def _report_checkpoint(
        self,
        storage_id: str,
        resources: dict[str, int] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._listener.on_checkpoint(storage_id, self._base / storage_id, dict(metadata or {}))


class ListenerPreemptContext(core.DummyPreemptContext):
    """Preemption that the listener requests (pruning), like the master's on a cluster."""

    def __init__(self, dist: core.DistributedContext, listener: RunListener) -> None:
        super().__init__(dist)
        self._listener = listener

    def should_preempt(self, auto_ack: bool = True) -> bool:
        super().should_preempt(auto_ack)
        return bool(self._listener.should_stop())


def instrument(
    core_context: core.Context, listener: RunListener, checkpoint_dir: Path, tensorboard_dir: Path
) -> core.Context:
    """Point an off-cluster ``core_context``'s reports at ``listener`` (in place)."""
    if core_context.info is not None:
        raise RuntimeError("instrument() is for off-cluster runs; on a cluster the master records")
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    tensorboard_dir.mkdir(parents=True, exist_ok=True)
    dist = core_context.distributed
    core_context.train = RecordingTrainContext(tensorboard_dir, listener)
    core_context.checkpoint = RecordingCheckpointContext(dist, checkpoint_dir, listener)
    preempt = ListenerPreemptContext(dist, listener)
    preempt.start()
    core_context.preempt = preempt
    return core_context
