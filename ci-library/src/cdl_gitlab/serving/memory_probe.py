"""Measuring the serving memory of a packaged artifact (``cdl deploy package``).

:func:`measure_artifact` runs a fresh interpreter (a subprocess, so nothing the calling
process imported is counted) that rebuilds the container's structure: like Seldon's main
process it imports ``seldon_core``'s microservice, builds the CDL component from
``model.json`` and Seldon's REST app, and records its resident set; then it forks a worker,
like gunicorn, that loads the model (``load()``) and sends :data:`MEASURE_REQUESTS` of the
largest requests the server accepts (``max_batch`` items; texts of ``max_text_chars``,
within ``max_request_bytes``) through the REST app, and records the worker's peak resident
set (``VmHWM``) and the part of it not shared with the main process. See
:mod:`cdl_gitlab.deploy.memory` for the limit derived from them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

from cdl_gitlab.deploy.artifact import ArtifactManifest, read_manifest
from cdl_gitlab.deploy.memory import MemoryMeasurement, ServingMemoryError
from cdl_gitlab.scoring import SCORING_URL_ENV

MEASURE_REQUESTS = 3
MEASURE_TIMEOUT = 600.0
PREDICTIONS = "/api/v1.0/predictions"
JSON_OVERHEAD = 1024


def largest_request(manifest: ArtifactManifest, limits: dict[str, int]) -> bytes:
    """The largest prediction request the server accepts for ``manifest``'s model."""
    batch = limits["max_batch"]
    if manifest.task == "text":
        room = max(1, (limits["max_request_bytes"] - JSON_OVERHEAD) // batch - 8)
        chars = min(limits["max_text_chars"], room)
        words = "cdl serving memory measurement "
        text = (words * (chars // len(words) + 1))[:chars]
        return json.dumps({"data": {"ndarray": [text] * batch}}).encode()
    count = 1
    for size in manifest.input_shape:
        count *= size
    item = [0.5] * count
    pixels: Any = item
    for size in reversed(manifest.input_shape[1:]):
        pixels = [pixels[i : i + size] for i in range(0, len(pixels), size)]
    return json.dumps({"data": {"ndarray": [pixels] * batch}}).encode()


def _status_bytes(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise ServingMemoryError(f"/proc/self/status has no {field} (Linux only)")


def _shared_now() -> int:
    """Resident pages this process shares with others (``/proc/self/smaps_rollup``), bytes."""
    shared = 0
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith(("Shared_Clean:", "Shared_Dirty:")):
            shared += int(line.split()[1]) * 1024
    return shared


def _worker(model: Any, app: Any, body: bytes, requests: int) -> dict[str, int]:
    """In the forked worker: load the model, answer the requests, report its memory."""
    model.load()
    client = app.test_client()
    for _ in range(requests):
        response = client.post(PREDICTIONS, data=body, content_type="application/json")
        if response.status_code != 200:
            raise ServingMemoryError(
                f"the measuring request got HTTP {response.status_code}: "
                f"{response.get_data(as_text=True)[:300]}"
            )
    peak = _status_bytes("VmHWM")
    return {"worker_peak_rss": peak, "worker_private": max(1, peak - _shared_now())}


def measure_here(folder: Path, requests: int) -> dict[str, int]:
    """The measurement in this (fresh) process: see the module's description."""
    import seldon_core.microservice  # noqa: F401  (what the main process imports)
    from seldon_core.metrics import SeldonMetrics
    from seldon_core.wrapper import get_rest_microservice

    from cdl_gitlab.serving.server import CDLModel

    os.environ.pop(SCORING_URL_ENV, None)  # a measurement stores no scoring data
    model = CDLModel(str(folder))
    app = get_rest_microservice(model, SeldonMetrics(worker_id_func=os.getpid))
    limits = {
        "max_batch": model.max_batch,
        "max_text_chars": model.max_text_chars,
        "max_request_bytes": model.guard_limits.max_bytes,
    }
    body = largest_request(read_manifest(folder), limits)
    base = _status_bytes("VmRSS")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker, as gunicorn forks it from the master
        os.close(read_end)
        code = 1
        try:
            os.write(write_end, json.dumps(_worker(model, app, body, requests)).encode())
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        answer = pipe.read()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0 or not answer:
        raise ServingMemoryError("the measuring worker failed (its traceback is above)")
    return {
        "base_rss": base,
        **json.loads(answer),
        "requests": requests,
        "batch": limits["max_batch"],
    }


def child_main() -> None:
    """Entry point of the measuring subprocess: ``<artifact folder> <requests> <result path>``."""
    result = measure_here(Path(sys.argv[1]), int(sys.argv[2]))
    Path(sys.argv[3]).write_text(json.dumps(result), encoding="utf-8")


def measure_artifact(
    folder: Path, requests: int = MEASURE_REQUESTS, timeout: float = MEASURE_TIMEOUT
) -> MemoryMeasurement:
    """Measure the serving memory of the artifact in ``folder`` in a fresh Python process."""
    code = "from cdl_gitlab.serving.memory_probe import child_main; child_main()"
    with tempfile.TemporaryDirectory(prefix="cdl-memory-") as scratch:
        result = Path(scratch) / "result.json"
        try:
            done = subprocess.run(
                [sys.executable, "-c", code, str(folder), str(requests), str(result)],
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise ServingMemoryError(
                f"measuring the serving memory of {folder} took over {timeout:.0f} s"
            ) from None
        if done.returncode != 0 or not result.is_file():
            tail = "\n".join(done.stderr.strip().splitlines()[-15:])
            raise ServingMemoryError(
                f"measuring the serving memory of {folder} failed (exit {done.returncode}):\n{tail}"
            )
        return MemoryMeasurement.from_dict(json.loads(result.read_text(encoding="utf-8")))
