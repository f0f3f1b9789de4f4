"""Waiting for the cluster's pipelines: the output commits of one commit set.

On Pachyderm a commit to a pipeline's input repo starts a job whose output commit belongs to
the same commit set (same id) in the pipeline's output repo; the output commit is finished
when the job ends, with ``error`` set when it failed. ``wait_for_outputs`` polls those commits
(``InspectCommit``) with a progress line per poll until all are finished, one fails, or the
timeout passes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc

from cdl_gitlab.data.errors import DataError

if TYPE_CHECKING:
    from cdl_gitlab.data.stores.pachyderm_store import PachydermStore

POLL_SECONDS = 5.0


def _state(store: PachydermStore, repo: str, commit_id: str) -> tuple[bool, str]:
    """(finished, error) of ``repo@commit_id``; not yet created counts as not finished."""
    commit = store.pfs.Commit(repo=store.repo_message(repo), id=commit_id)
    try:
        info = store.client.pfs.inspect_commit(commit=commit)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
            return False, ""
        raise DataError(f"waiting for {repo}@{commit_id}: Pachyderm error: {exc}") from exc
    # betterproto decodes an unset Timestamp as the epoch, so "finished" means after it
    finished = info.finished is not None and info.finished.timestamp() > 0
    return finished, info.error or ""


def wait_for_outputs(
    store: PachydermStore,
    pipelines: list[str],
    commit_id: str,
    timeout: float,
    echo: Callable[[str], None],
    poll: float | None = None,
) -> None:
    """Wait until each pipeline's output commit in commit set ``commit_id`` is finished.

    Raises :class:`DataError` naming the pipeline when its job failed, or naming the
    pipelines still running when ``timeout`` seconds pass."""
    poll = POLL_SECONDS if poll is None else poll
    start = time.monotonic()
    pending = list(pipelines)
    while True:
        for name in list(pending):
            finished, error = _state(store, name, commit_id)
            if error:
                raise DataError(
                    f"pipeline {name} failed on commit {commit_id}: {error}; see "
                    f"`pachctl list job {commit_id}` and `pachctl logs --pipeline {name}`"
                )
            if finished:
                pending.remove(name)
                echo(f"{name}: output commit {commit_id[:12]} finished")
        if not pending:
            return
        waited = time.monotonic() - start
        if waited >= timeout:
            raise DataError(
                f"timed out after {timeout:g}s waiting for {', '.join(pending)} to finish "
                f"commit {commit_id} (cluster.pipeline_wait_timeout in cdl.yaml); see "
                f"`pachctl list job {commit_id}`"
            )
        echo(f"waiting for {', '.join(pending)} (commit {commit_id[:12]}, {waited:.0f}s)")
        time.sleep(min(poll, max(timeout - waited, 0.0)))
