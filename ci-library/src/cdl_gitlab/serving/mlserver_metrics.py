"""The CDL metrics of the MLServer runtime, on MLServer's metrics endpoint (``/metrics``).

The same names as the Seldon component's (:mod:`cdl_gitlab.serving.server`):
``cdl_prediction_requests_total`` / ``cdl_prediction_items_total`` {model, version},
``cdl_prediction_latency`` (a histogram, seconds), ``cdl_predicted_class_total`` {class},
``cdl_rejected_requests_total`` {reason} and ``cdl_scoring_failures_total``. They are created
once per process (this module is not reloaded with the runtime's) in Prometheus' default
registry, the one MLServer's metrics endpoint serves when it runs without parallel workers
(``parallel_workers: 0``, as CDL runs it).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from prometheus_client import REGISTRY, Counter, Histogram


@dataclass(frozen=True)
class CDLMetrics:
    requests: Counter
    items: Counter
    latency: Histogram
    predicted: Counter
    rejected: Counter
    scoring_failures: Counter


@cache
def cdl_metrics() -> CDLMetrics:
    """The process's metrics, registered on first use."""
    model = ["model", "version"]
    return CDLMetrics(
        requests=Counter(
            "cdl_prediction_requests", "Prediction requests answered", model, registry=REGISTRY
        ),
        items=Counter("cdl_prediction_items", "Items predicted", model, registry=REGISTRY),
        latency=Histogram(
            "cdl_prediction_latency", "Prediction latency (seconds)", model, registry=REGISTRY
        ),
        predicted=Counter(
            "cdl_predicted_class", "Predicted items per class", ["class"], registry=REGISTRY
        ),
        rejected=Counter(
            "cdl_rejected_requests", "Requests refused with a 4xx", ["reason"], registry=REGISTRY
        ),
        scoring_failures=Counter(
            "cdl_scoring_failures",
            "Scoring rows that could not be stored",
            model,
            registry=REGISTRY,
        ),
    )
