"""Memory of the serving container: the measurement's record and the limit derived from it.

Seldon Core's v1 Python wrapper runs, in one container (``GRPC_WORKERS=0``, the
SeldonDeployment's REST endpoint): the main process (the REST gunicorn master, which imports
the wrapper and builds the component from ``model.json`` only), ``GUNICORN_WORKERS`` REST
workers forked from it that each load their own copy of the model, and
:data:`AUX_PROCESSES` processes forked from it that never load the model (the metrics server's
gunicorn master and worker, the manager of Seldon's multiprocess metrics).

:mod:`cdl_gitlab.serving.memory_probe` measures a packaged artifact the same way
(``cdl deploy package`` records it as ``serving_memory``): ``base_rss``, the main process's
resident set; ``worker_peak_rss`` and ``worker_private``, the peak resident set of a worker
forked from it that loaded the model and answered the largest requests, and the part of it not
shared with the main process.

:func:`memory_need` is what the container's memory cgroup is charged (shared pages once):
``base_rss + workers x worker_private + AUX_PROCESSES x AUX_PRIVATE``; :func:`memory_limit`
adds :data:`HEADROOM` and rounds up to 64 Mi. ``benchmarks/serving_memory.py`` compares both
with the real server's process tree (summed PSS).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from cdl_gitlab.errors import CDLError

MI = 1024 * 1024
ROUND_TO = 64 * MI
HEADROOM = 1.25
"""Factor over the measured need (allocator fragmentation, request bursts, log buffers)."""
AUX_PROCESSES = 3
"""Server processes besides the main one that never load the model (see above)."""
AUX_PRIVATE = 16 * MI
"""Private memory of one of them (benchmarks/serving_memory.py: at most 14 Mi USS each)."""
METADATA_KEY = "serving_memory"
"""Key of the measurement in ``model.json`` and in the registry version's metadata."""

_QUANTITY = re.compile(r"^(?P<number>[0-9]+(\.[0-9]+)?)(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_FACTORS = {
    None: 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}


class ServingMemoryError(CDLError):
    """The serving memory cannot be measured, or a configured limit is below the need."""


@dataclass(frozen=True)
class MemoryMeasurement:
    """What one measurement found (bytes)."""

    base_rss: int
    worker_peak_rss: int
    worker_private: int
    requests: int
    batch: int

    def to_dict(self) -> dict[str, int]:
        return {
            "base_rss": self.base_rss,
            "worker_peak_rss": self.worker_peak_rss,
            "worker_private": self.worker_private,
            "requests": self.requests,
            "batch": self.batch,
        }

    @classmethod
    def from_dict(cls, data: Any) -> MemoryMeasurement:
        """The measurement recorded in metadata; ServingMemoryError if it is malformed."""
        try:
            found = cls(
                base_rss=int(data["base_rss"]),
                worker_peak_rss=int(data["worker_peak_rss"]),
                worker_private=int(data["worker_private"]),
                requests=int(data["requests"]),
                batch=int(data["batch"]),
            )
        except (TypeError, KeyError, ValueError) as exc:
            raise ServingMemoryError(f"malformed {METADATA_KEY} record {data!r}: {exc}") from None
        if min(found.base_rss, found.worker_peak_rss, found.worker_private) <= 0:
            raise ServingMemoryError(f"malformed {METADATA_KEY} record {data!r}: sizes must be > 0")
        return found


def parse_quantity(text: str) -> int:
    """Bytes of a Kubernetes memory quantity (``512Mi``, ``1Gi``, ``1.5G``, ``1000000``)."""
    match = _QUANTITY.match(str(text).strip())
    if not match:
        raise ServingMemoryError(
            f"memory {text!r} is not a Kubernetes quantity (for example 768Mi, 1Gi or 1.5G)"
        )
    return math.ceil(float(match["number"]) * _FACTORS[match["suffix"]])


def format_quantity(size: int) -> str:
    """``size`` bytes (a multiple of 1 Mi) as ``<n>Mi``."""
    return f"{math.ceil(size / MI)}Mi"


def memory_need(measurement: MemoryMeasurement, workers: int) -> int:
    """Bytes the container needs with ``workers`` REST workers (no headroom)."""
    return measurement.base_rss + workers * measurement.worker_private + AUX_PROCESSES * AUX_PRIVATE


def memory_limit(measurement: MemoryMeasurement, workers: int, headroom: float = HEADROOM) -> int:
    """The derived limit in bytes: the need times ``headroom``, rounded up to 64 Mi."""
    return math.ceil(memory_need(measurement, workers) * headroom / ROUND_TO) * ROUND_TO


def resolve_memory(configured: str, measurement: MemoryMeasurement | None, workers: int) -> str:
    """The container's memory (request = limit) from ``deployment.memory``.

    ``auto``: the limit derived from ``measurement`` (required). An explicit quantity wins,
    but one below the measured need (without headroom) is refused.
    """
    if configured == "auto":
        if measurement is None:
            raise ServingMemoryError(
                "deployment.memory is auto but the model version has no measured serving "
                f"memory ({METADATA_KEY}): package it with `cdl deploy package` (which "
                "measures it), or set deployment.memory to a quantity such as 1Gi"
            )
        return format_quantity(memory_limit(measurement, workers))
    size = parse_quantity(configured)
    if measurement is not None:
        need = memory_need(measurement, workers)
        if size < need:
            raise ServingMemoryError(
                f"deployment.memory {configured} is below what the model needs with {workers} "
                f"worker(s): {format_quantity(need)} measured (server "
                f"{measurement.base_rss / MI:.0f} Mi + {workers} x "
                f"{measurement.worker_private / MI:.0f} Mi per worker); the pods "
                "would be OOM-killed. Use deployment.memory: auto (derives "
                f"{format_quantity(memory_limit(measurement, workers))}) or a larger value"
            )
    return configured
