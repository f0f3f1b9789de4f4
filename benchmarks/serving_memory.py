"""Serving memory: the real Seldon server's process tree vs the limit CDL derives.

Usage: python benchmarks/serving_memory.py [--frameworks pytorch,keras] [--workers 1,2]
                                           [--requests 20] [--batch 64] [--text-chars 100000]

For each framework it builds a model of the use case's shape in a temporary project (PyTorch
text: the news-sized baseline, 10,000-stem vocabulary, widths 512/256/128/64; Keras image: the
fashion 28x28 MLP), packages it with ``package_version(..., measure=measure_artifact)`` (what
``cdl deploy package`` runs: the measurement in a fresh process, recorded as
``serving_memory``), then serves it with the real ``seldon-core-microservice`` (as the
container does: ``--workers N``, no gRPC server) and sends ``--requests`` requests of the
largest size the server accepts (``--batch`` items; texts of ``--text-chars``). While they run
it samples every process of the server's tree with psutil (RSS, PSS, USS) and prints each
process's peak, the peak RSS per REST worker, the tree's peak summed PSS (what the memory
cgroup charges, shared pages counted once) and summed RSS, next to CDL's measurement and the
limit it derives for ``deployment.memory: auto``. Only loopback traffic; the server is always
stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "deploy")]

from deploy_models import (  # noqa: E402
    keras_image_checkpoint,
    make_project,
    register,
    torch_text_checkpoint,
)

from cdl_gitlab.config import load_settings  # noqa: E402
from cdl_gitlab.deploy.memory import (  # noqa: E402
    AUX_PROCESSES,
    MI,
    MemoryMeasurement,
    memory_limit,
    memory_need,
)
from cdl_gitlab.deploy.package import package_version  # noqa: E402
from cdl_gitlab.serving import local_server  # noqa: E402
from cdl_gitlab.serving.memory_probe import measure_artifact  # noqa: E402

SAMPLE_EVERY = 0.2


def project(scratch: Path, framework: str, batch: int, text_chars: int):
    """A temporary project serving ``framework``'s model with the default request limits."""
    if framework == "pytorch":
        settings = make_project(scratch / "text", "pytorch", "text", "text-bench")
        checkpoint = torch_text_checkpoint(scratch / "ckpt-text", news_sized=True)
    else:
        settings = make_project(scratch / "image", "keras", "image", "image-bench")
        checkpoint = keras_image_checkpoint(scratch / "ckpt-image")
    config = settings.root / "cdl.yaml"
    text = config.read_text(encoding="utf-8")
    text = text.replace("max_batch: 8", f"max_batch: {batch}")
    text = text.replace("max_text_chars: 2000", f"max_text_chars: {text_chars}")
    config.write_text(text, encoding="utf-8")
    settings = load_settings(config)
    return settings, register(settings, checkpoint)


def request_body(task: str, batch: int, text_chars: int) -> bytes:
    if task == "text":
        words = "the minister said the football team scored a goal with a new phone chip "
        text = (words * (text_chars // len(words) + 1))[:text_chars]
        return json.dumps({"data": {"ndarray": [text] * batch}}).encode()
    pixels = np.full((batch, 28, 28), 0.5).tolist()
    return json.dumps({"data": {"ndarray": pixels}}).encode()


def role(process: psutil.Process, leader: int, workers: set[int]) -> str:
    if process.pid == leader:
        return "main (REST gunicorn master)"
    if process.pid in workers:
        return "REST worker"
    try:
        return " ".join(process.cmdline()[1:4])[:60] or process.name()
    except psutil.Error:
        return "?"


def sample(leader: int, peaks: dict[int, dict[str, float]], totals: dict[str, float]) -> None:
    try:
        tree = [psutil.Process(leader), *psutil.Process(leader).children(recursive=True)]
    except psutil.Error:
        return
    pss_sum = rss_sum = 0.0
    for process in tree:
        try:
            info = process.memory_full_info()
        except psutil.Error:
            continue
        peak = peaks.setdefault(process.pid, {"rss": 0.0, "pss": 0.0, "uss": 0.0})
        peak["rss"] = max(peak["rss"], info.rss)
        peak["pss"] = max(peak["pss"], info.pss)
        peak["uss"] = max(peak["uss"], info.uss)
        pss_sum += info.pss
        rss_sum += info.rss
    totals["pss"] = max(totals["pss"], pss_sum)
    totals["rss"] = max(totals["rss"], rss_sum)


def rest_workers(leader: int, port: int) -> set[int]:
    """The gunicorn workers of the REST master: its children listening on ``port``'s socket."""
    found = set()
    for child in psutil.Process(leader).children():
        try:
            if any(c.laddr and c.laddr.port == port for c in child.net_connections("tcp")):
                found.add(child.pid)
        except psutil.Error:
            continue
    return found


def run(settings, version: int, workers: int, requests: int, body: bytes) -> dict:
    info, process = local_server.serve(
        settings,
        version,
        local_server.free_port(),
        local_server.free_port(),
        workers=workers,
        threads=1,
    )
    peaks: dict[int, dict[str, float]] = {}
    totals = {"pss": 0.0, "rss": 0.0}
    done = threading.Event()

    def sampler() -> None:
        while not done.is_set():
            sample(info.pid, peaks, totals)
            time.sleep(SAMPLE_EVERY)

    thread = threading.Thread(target=sampler)
    try:
        time.sleep(2.0)  # every worker loads the model before it serves
        workers_pids = rest_workers(info.pid, info.port)
        thread.start()
        failures = 0
        for _ in range(requests):
            request = urllib.request.Request(
                local_server.predictions_url(info.url),
                data=body,
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=120) as response:
                    response.read()
            except OSError:
                failures += 1
        time.sleep(1.0)
        done.set()
        thread.join()
        roles = {}
        for pid in peaks:
            try:
                roles[pid] = role(psutil.Process(pid), info.pid, workers_pids)
            except psutil.Error:
                roles[pid] = "(exited)"
    finally:
        done.set()
        local_server.stop(settings)
        local_server.stop_group(process.pid, grace=5)
    return {
        "peaks": peaks,
        "roles": roles,
        "totals": totals,
        "workers": workers_pids,
        "failures": failures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frameworks", default="pytorch,keras")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--text-chars", type=int, default=100_000)
    args = parser.parse_args()
    os.environ.pop("CDL_SCORING_URL", None)
    for framework in args.frameworks.split(","):
        with tempfile.TemporaryDirectory(prefix="cdl-bench-memory-") as scratch:
            settings, version = project(Path(scratch), framework, args.batch, args.text_chars)
            started = time.perf_counter()
            _, manifest = package_version(settings, version, measure=measure_artifact)
            seconds = time.perf_counter() - started
            measured = MemoryMeasurement.from_dict(manifest.data["serving_memory"])
            body = request_body(manifest.task, args.batch, args.text_chars)
            print(
                f"== {framework} {manifest.task} model ({len(body) / MI:.1f} Mi requests of "
                f"{args.batch} items)"
            )
            print(
                f"cdl deploy package measured in {seconds:.1f} s: main process (no model) "
                f"{measured.base_rss / MI:.0f} Mi RSS; worker peak "
                f"{measured.worker_peak_rss / MI:.0f} Mi RSS, "
                f"{measured.worker_private / MI:.0f} Mi private"
            )
            for workers in (int(n) for n in args.workers.split(",")):
                result = run(settings, version, workers, args.requests, body)
                print(
                    f"-- {workers} REST worker(s), {args.requests} requests, "
                    f"{result['failures']} failed"
                )
                for pid, peak in sorted(result["peaks"].items()):
                    print(
                        f"   {result['roles'][pid]:<42} peak RSS {peak['rss'] / MI:7.0f} Mi  "
                        f"PSS {peak['pss'] / MI:7.0f} Mi  USS {peak['uss'] / MI:7.0f} Mi"
                    )
                worker_rss = [result["peaks"][pid]["rss"] for pid in result["workers"]]
                print(
                    f"   peak RSS per REST worker: "
                    f"{', '.join(f'{r / MI:.0f} Mi' for r in worker_rss) or '(none found)'}; "
                    f"processes: {len(result['peaks'])} (1 + {AUX_PROCESSES} + workers expected)"
                )
                print(
                    f"   tree peak: summed PSS {result['totals']['pss'] / MI:.0f} Mi (what the "
                    f"cgroup charges), summed RSS {result['totals']['rss'] / MI:.0f} Mi"
                )
                print(
                    f"   CDL: need {memory_need(measured, workers) / MI:.0f} Mi, derived limit "
                    f"(deployment.memory: auto) {memory_limit(measured, workers) / MI:.0f} Mi"
                )


if __name__ == "__main__":
    main()
