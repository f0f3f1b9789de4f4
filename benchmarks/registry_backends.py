"""Per-registration cost of the model registry backends: the local registry (SQLite + files)
against the ``mlflow`` backend on a real MLflow server (SQLite, optionally PostgreSQL backend
store, from ``.venv-mlflow``) and on the fake of GitLab's MLflow endpoint.

Usage: python benchmarks/registry_backends.py [--versions 10] [--mb 1 10] [--postgres]

Each registration registers one checkpoint folder of ``--mb`` MB (random bytes, so the archive
does not shrink) with a realistic metadata record; the figures are the median wall time of
``register_version``, of ``get_version`` (latest) and of ``add_metadata`` (test metrics), and
for the MLflow backends the HTTP requests one registration makes (a recording proxy in front
of the server). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests")]

from cdl_gitlab.registry import Checkpoint, LocalRegistry, ModelRegistry  # noqa: E402
from cdl_gitlab.registry.mlflow_backend import MlflowRegistry  # noqa: E402
from fakes.gitlab_mlflow import FakeGitLabMlflow  # noqa: E402
from fakes.mlflow_server import MLFLOW_BIN, RecordingProxy, mlflow_server  # noqa: E402

METADATA = {
    "framework": "pytorch",
    "task": "text",
    "hparams": {"learning_rate": 0.01, "epochs": 6, "global_batch_size": 32},
    "metrics": {"validation": {"accuracy": 0.91, "validation_loss": 0.3}},
    "lineage": {
        "code": {"commit": "c0ffee" * 6 + "ab", "branch": "dev", "dirty": False},
        "data": {
            "train": {"repo": "news-train-validate", "branch": "master", "commit": "a" * 32},
            "test": {"repo": "news-test-validate", "branch": "master", "commit": "b" * 32},
        },
        "hardware": {"cpu_model": "x86_64", "cpu_cores": 2, "gpu_model": None, "gpu_count": 0},
        "environment": {"python": "3.11.7", "packages": {"torch": "2.13.0", "numpy": "1.26.4"}},
        "cost": {"wall_seconds": 41.2, "device_hours": 0.0114},
    },
}


def checkpoint(root: Path, index: int, megabytes: float) -> Checkpoint:
    folder = root / f"ckpt-{index}"
    folder.mkdir(parents=True)
    (folder / "state_dict.pth").write_bytes(os.urandom(int(megabytes * 1024 * 1024)))
    (folder / "cdl_checkpoint.json").write_text('{"classes": ["a", "b"]}')
    return Checkpoint(f"uuid-{index}", folder)


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def measure(
    label: str, registry: ModelRegistry, calls: list | None, versions: int, mb: float
) -> None:
    register, get, update, requests = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="cdl-bench-ckpt-") as scratch:
        for index in range(versions):
            ckpt = checkpoint(Path(scratch), index, mb)
            before = len(calls) if calls is not None else 0
            register.append(timed(partial(registry.register_version, "bench", ckpt, METADATA)))
            if calls is not None:
                requests.append(len(calls) - before)
            get.append(timed(partial(registry.get_version, "bench")))
            test = {"metrics": {"test": {"accuracy": 0.9}}}
            update.append(timed(partial(registry.add_metadata, "bench", index + 1, test)))
    per_request = f"{statistics.median(requests):>5.0f}" if requests else "    -"
    print(
        f"{label:<28} {mb:>5.1f} MB  register {statistics.median(register) * 1000:>8.1f} ms"
        f"  get {statistics.median(get) * 1000:>7.1f} ms"
        f"  add_metadata {statistics.median(update) * 1000:>7.1f} ms"
        f"  requests/registration {per_request}"
    )


@contextlib.contextmanager
def environment(uri: str, token: str | None = None) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN")}
    os.environ["MLFLOW_TRACKING_URI"] = uri
    if token:
        os.environ["MLFLOW_TRACKING_TOKEN"] = token
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def postgres_store() -> Iterator[str]:
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import PostgresServer

    with PostgresServer().database("cdl_bench_mlflow") as url:
        yield url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=10)
    parser.add_argument("--mb", type=float, nargs="+", default=[1.0, 10.0])
    parser.add_argument("--postgres", action="store_true", help="also PostgreSQL backend store")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    print(f"{args.versions} registrations per row; medians")
    for mb in args.mb:
        with tempfile.TemporaryDirectory(prefix="cdl-bench-") as tmp:
            measure("local (SQLite + files)", LocalRegistry(Path(tmp)), None, args.versions, mb)
        with contextlib.ExitStack() as stack:
            fake = stack.enter_context(FakeGitLabMlflow(token="glpat-bench"))
            stack.enter_context(environment(fake.tracking_uri, "glpat-bench"))
            measure("mlflow: GitLab fake", MlflowRegistry(), fake.calls, args.versions, mb)
        if not MLFLOW_BIN.exists():
            print(f"(no {MLFLOW_BIN}: run scripts/install-ci-tools.sh for the real server)")
            continue
        stores = [("sqlite", None)] + ([("postgresql", postgres_store)] if args.postgres else [])
        for kind, factory in stores:
            with contextlib.ExitStack() as stack:
                tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="cdl-bench-mlflow-"))
                if factory is None:
                    store = f"sqlite:///{tmp}/mlflow.sqlite"
                else:
                    store = stack.enter_context(factory())
                url = stack.enter_context(mlflow_server(store, Path(tmp) / "server"))
                proxy = stack.enter_context(RecordingProxy(url))
                stack.enter_context(environment(proxy.url))
                label = f"mlflow server ({kind})"
                measure(label, MlflowRegistry(), proxy.calls, args.versions, mb)


if __name__ == "__main__":
    main()
