"""Serving figures: the local model servers (Seldon, MLServer) under bounded loopback load vs
raw ``predict``.

Usage: python benchmarks/serving.py [--requests 2000] [--seconds 30] [--clients 1,2]
                                    [--threads 2] [--workers 2] [--project DIR --version N]
                                    [--engines seldon,mlserver]

Without ``--project`` it builds a news-sized PyTorch text baseline (10,000-stem vocabulary,
widths 512/256/128/64, untrained weights cost the same as trained ones) in a temporary
project. For each of ``--engines`` it packages and serves the model with the real server on
127.0.0.1 (``seldon-core-microservice``; MLServer 1.7.1 with the CDL runtime, from
``$CDL_MLSERVER`` or ``.venv-mlserver``; scoring data into the project's SQLite store, as
``cdl deploy serve`` does), then
sends single-item requests of article-length texts from ``--clients`` HTTP/1.1 clients, each
its own process (one load per count in the list; the clients share the 2 cores with the server)
until ``--requests`` are done or ``--seconds`` have passed, and prints requests/s, p50/p99
latency and errors for each; then the same model in-process on the same inputs (p50/p99): the
eager ``predict_proba``, and the servers' own path (``predict_items`` after
``load_for_serving``), to which the overhead ratio refers; and per engine how long
``cdl deploy stop`` took (and whether any process of the server's group was left). Only
loopback traffic; the servers are always stopped.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "deploy")]

from deploy_models import (  # noqa: E402
    MLSERVER_VENV,
    make_project,
    news_sized_texts,
    register,
    torch_text_checkpoint,
)

from cdl_gitlab.config import load_settings  # noqa: E402
from cdl_gitlab.deploy.loading import load_artifact  # noqa: E402
from cdl_gitlab.serving import local_server  # noqa: E402
from cdl_gitlab.serving.predictions import load_for_serving, predict_items  # noqa: E402


def client(port: int, path: str, bodies: list[bytes], count: int, deadline: float, out) -> None:
    """One client (its own process; keep-alive unless the server closes the connection):
    ``count`` requests or until ``deadline``;
    sends its latencies and errors back through the pipe ``out``."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies: list[float] = []
    errors: list[str] = []
    for index in range(count):
        if time.time() > deadline:
            break
        body = bodies[index % len(bodies)]
        started = time.perf_counter()
        try:
            connection.request("POST", path, body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            payload = response.read()
            elapsed = time.perf_counter() - started
            if response.status != 200:
                errors.append(f"HTTP {response.status}: {payload[:200]!r}")
            latencies.append(elapsed)
        except (OSError, http.client.HTTPException) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.close()
    out.send((latencies, errors))
    out.close()


def request_body(engine: str, text: str) -> dict:
    if engine == "mlserver":
        return {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [text]}]}
    return {"data": {"ndarray": [text]}}


def load_test(
    port: int, path: str, bodies: list[bytes], requests: int, seconds: float, clients: int
) -> dict:
    """``clients`` client processes (as separate programs would be: threads of one Python
    process would wait for each other's GIL and add that to the latencies) share
    ``requests``; throughput is all requests over the wall time of the slowest client."""
    context = multiprocessing.get_context("fork")
    deadline = time.time() + seconds
    pipes, processes = [], []
    for i in range(clients):
        receiver, sender = context.Pipe(duplex=False)
        count = requests // clients + (1 if i < requests % clients else 0)
        process = context.Process(
            target=client,
            args=(port, path, bodies[i::clients] or bodies, count, deadline, sender),
        )
        pipes.append(receiver)
        processes.append(process)
    started = time.perf_counter()
    for process in processes:
        process.start()
    results = [pipe.recv() for pipe in pipes]
    wall = time.perf_counter() - started
    for process in processes:
        process.join()
    latencies = [value for result in results for value in result[0]]
    errors = [error for result in results for error in result[1]]
    return {
        "requests": len(latencies) + len([e for e in errors if not e.startswith("HTTP")]),
        "wall_s": wall,
        "rps": len(latencies) / wall,
        "p50_ms": float(np.percentile(latencies, 50) * 1000) if latencies else float("nan"),
        "p99_ms": float(np.percentile(latencies, 99) * 1000) if latencies else float("nan"),
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
    }


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of the process group ``pgid``."""
    members = []
    for process in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(process.info["pid"]) == pgid and process.info["status"] != "zombie":
                members.append(process.info["pid"])
        except (psutil.Error, ProcessLookupError):
            continue
    return members


def raw_predict(predict, texts: list[str], count: int, seconds: float) -> dict:
    """``predict([text])`` timed call by call, in this process."""
    timings = []
    deadline = time.monotonic() + seconds
    for i in range(count):
        if time.monotonic() > deadline:
            break
        started = time.perf_counter()
        predict([texts[i % len(texts)]])
        timings.append(time.perf_counter() - started)
    return {
        "calls": len(timings),
        "p50_ms": float(np.percentile(timings, 50) * 1000),
        "p99_ms": float(np.percentile(timings, 99) * 1000),
        "per_s": len(timings) / sum(timings),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument(
        "--clients",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1, 2],
        help="Comma-separated client counts, one load test each (default: 1,2).",
    )
    parser.add_argument("--threads", type=int, default=local_server.DEFAULT_THREADS)
    parser.add_argument("--workers", type=int, default=local_server.DEFAULT_WORKERS)
    parser.add_argument("--project", type=Path, help="A trained CDL project (cdl.yaml folder).")
    parser.add_argument("--version", type=int, default=None)
    parser.add_argument(
        "--engines",
        type=lambda text: text.split(","),
        default=["seldon", "mlserver"],
        help="Comma-separated serving engines (default: seldon,mlserver).",
    )
    args = parser.parse_args()
    args.requests = min(args.requests, 20_000)
    args.seconds = min(args.seconds, 120.0)
    if "mlserver" in args.engines and not os.environ.get("CDL_MLSERVER"):
        os.environ["CDL_MLSERVER"] = str(MLSERVER_VENV / "bin" / "mlserver")

    texts = news_sized_texts(200, seed=3)
    os.environ["CDL_MAX_TEXT_CHARS"] = "100000"  # article-length inputs (server override)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="cdl-bench-serving-") as scratch:
        checkpoint = None
        if not args.project:
            checkpoint = torch_text_checkpoint(Path(scratch) / "ckpt", news_sized=True)
        for engine in args.engines:
            if args.project:
                settings = load_settings(args.project / "cdl.yaml")
                version = args.version
                what = f"{settings.config.model.name} from {args.project}"
            else:
                settings = make_project(
                    Path(scratch) / engine / "news", "pytorch", "text", "news-bench", engine
                )
                version = register(settings, checkpoint)
                what = "news-sized PyTorch text baseline (synthetic)"
            results[engine] = serve_and_load(settings, version, engine, texts, args)
            results[engine]["what"] = what
        info = results[args.engines[0]]["info"]
        _, predictor = load_artifact(Path(info.artifact))
        predictor.predict_proba(texts[:5])
        eager = raw_predict(predictor.predict_proba, texts, args.requests, args.seconds)
        manifest, served = load_for_serving(Path(info.artifact))
        predict_items(served, manifest, texts[:5])
        raw = raw_predict(
            lambda items: predict_items(served, manifest, items),
            texts,
            args.requests,
            args.seconds,
        )

    print(f"model: {results[args.engines[0]]['what']}, v{info.version}")
    for name, figures, what in (
        ("eager", eager, "predict_proba, the eager model, PyTorch's default threads"),
        ("raw", raw, "the servers' predict_items: fast forward pass, one PyTorch thread"),
    ):
        print(
            f"{name:7} {figures['calls']} calls in-process ({what}): "
            f"p50 {figures['p50_ms']:.2f} ms, p99 {figures['p99_ms']:.2f} ms, "
            f"{figures['per_s']:.1f} calls/s"
        )
    for engine in args.engines:
        result = results[engine]
        server = (
            f"seldon-core-microservice, {args.workers} worker(s) x {args.threads} threads"
            if engine == "seldon"
            else "MLServer 1.7.1 + CDL runtime and guard, 1 process (parallel_workers 0)"
        )
        print(f"{engine}: {server}; clients on 127.0.0.1 (keep-alive where the server allows)")
        print(
            f"  stop    cdl deploy stop (local_server.stop) took {result['stop_s']:.3f} s; "
            f"processes of the group left: {len(result['left'])}"
        )
        for clients, served in result["loads"].items():
            print(
                f"  served  {clients} clients: {served['requests']} requests in "
                f"{served['wall_s']:.1f} s: {served['rps']:.1f} requests/s, "
                f"p50 {served['p50_ms']:.2f} ms, p99 {served['p99_ms']:.2f} ms, "
                f"errors {served['errors']}; overhead ratio (p50 / raw p50) "
                f"{served['p50_ms'] / raw['p50_ms']:.1f}x"
            )
            if served["first_error"]:
                print(f"          first error: {served['first_error']}")


def serve_and_load(settings, version, engine: str, texts: list[str], args) -> dict:
    """Serve with ``engine``, run the loads, stop (timed); the figures."""
    info, process = local_server.serve(
        settings,
        version,
        local_server.free_port(),
        local_server.free_port(),
        workers=args.workers,
        threads=args.threads,
    )
    path = info.predict_url.removeprefix(info.url)
    bodies = [json.dumps(request_body(engine, text)).encode() for text in texts]
    try:
        for text in texts[:20]:  # warm-up
            local_server.post_json(info.predict_url, request_body(engine, text))
        loads = {
            clients: load_test(info.port, path, bodies, args.requests, args.seconds, clients)
            for clients in args.clients
        }
    finally:
        stop_started = time.perf_counter()
        local_server.stop(settings)
        stop_s = time.perf_counter() - stop_started
        left = group_members(info.pid)
        local_server.stop_group(process.pid, grace=5)
    return {"info": info, "loads": loads, "stop_s": stop_s, "left": left}


if __name__ == "__main__":
    main()
