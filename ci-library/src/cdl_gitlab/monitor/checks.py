"""The checks of a monitoring report, the verdict they add up to and where to re-enter.

Statuses: ``ok``, ``warn``, ``drift`` (a check that could not run is *skipped*, with why).
A distribution shift is ``warn``/``drift`` only when its test is significant (p below
``monitoring.p_value``) *and* its PSI reaches ``psi_warn``/``psi_drift``: with many live
rows every tiny shift is significant, and with few rows PSI alone is noise.

Verdict: ``insufficient-data`` when drift could not be judged (fewer than ``min_samples``
scored items, or no reference statistics) and no check that could run found a problem; else
the worst status of the checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from cdl_gitlab.monitor.feedback import Accuracy
from cdl_gitlab.monitor.live import LiveData
from cdl_gitlab.monitor.stats import Comparison, Thresholds, compare_continuous, compare_counts

if TYPE_CHECKING:
    from cdl_gitlab.config import Settings

OK, WARN, DRIFT, INSUFFICIENT = "ok", "warn", "drift", "insufficient-data"
SEVERITY = {OK: 0, WARN: 1, DRIFT: 2}
KIND_INPUT, KIND_PREDICTION, KIND_ACCURACY, KIND_ERRORS = (
    "input",
    "prediction",
    "accuracy",
    "errors",
)

TITLES = {
    "n_chars": "document length (characters)",
    "n_tokens": "document length (tokens)",
    "oov_rate": "out-of-vocabulary rate",
    "pixel_mean": "mean pixel intensity per image",
    "pixel_std": "pixel contrast (std) per image",
    "stem_profile": "token (stem) frequency profile",
    "predictions": "predicted-class distribution",
    "confidence": "confidence (max probability)",
    "error_rate": "rejected-request rate",
    "accuracy": "live accuracy",
}


@dataclass(frozen=True)
class Policy:
    """Thresholds of ``monitoring`` in cdl.yaml."""

    thresholds: Thresholds = field(default_factory=Thresholds)
    min_samples: int = 200
    max_error_rate: float = 0.05
    accuracy_floor: float = 0.8
    min_labels: int = 30

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        section = settings.config.monitoring
        floor = section.accuracy_floor
        return cls(
            Thresholds(section.psi_warn, section.psi_drift, section.p_value),
            section.min_samples,
            section.max_error_rate,
            settings.config.training.accuracy_threshold if floor is None else floor,
            section.min_labels,
        )


@dataclass
class Check:
    """One check: what was compared, its outcome and the figure that explains it."""

    name: str
    kind: str
    status: str
    message: str
    comparison: Comparison | None = None
    figure: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return TITLES.get(self.name, self.name)

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "check": self.name,
            "kind": self.kind,
            "status": self.status,
            "message": self.message,
            "figure": self.figure,
        }
        if self.comparison is not None:
            data.update(self.comparison.as_dict())
            data["status"] = self.status
        data.update(self.details)
        return data


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _describe(title: str, result: Comparison, extra: str = "") -> str:
    return (
        f"{title}{extra}: {result.test} statistic {result.statistic:.3g}, "
        f"p={result.p_value:.3g}, PSI {result.psi:.3f} -> {result.status}"
    )


def feature_checks(
    live: LiveData, reference: dict[str, Any], policy: Policy, skipped: list[dict[str, str]]
) -> list[Check]:
    """KS + PSI of each input feature the reference and the live ``input_stats`` both have."""
    checks = []
    for name, accumulator in live.features.items():
        summary = reference["features"].get(name)
        if summary is None:
            skipped.append({"check": name, "why": "the reference has no statistics for it"})
            continue
        if accumulator.n < policy.min_samples:
            missing = live.missing.get(name, 0)
            why = f"only {accumulator.n} scored items carry it (need {policy.min_samples})"
            if missing:
                why += (
                    f"; {missing} records have no input_stats value for it (the serving "
                    "wrapper does not record it: use cdl_gitlab.features.input_stats)"
                )
            skipped.append({"check": name, "why": why})
            continue
        result = compare_continuous(
            summary, accumulator.sample.values, accumulator.counts, policy.thresholds
        )
        live_median = float(np.median(accumulator.sample.values))
        ref_median = summary["quantiles"].get("p50")
        extra = f" (median live {_fmt(live_median)} vs reference {_fmt(ref_median)})"
        checks.append(
            Check(
                name,
                KIND_INPUT,
                result.status,
                _describe(TITLES[name], result, extra),
                result,
                details={
                    "live_median": round(live_median, 6),
                    "reference_median": ref_median,
                    "live_n": accumulator.n,
                },
            )
        )
    return checks


def stem_check(
    live: LiveData, reference: dict[str, Any], policy: Policy, skipped: list[dict[str, str]]
) -> list[Check]:
    """Chi-square + PSI of the token profile over the reference's top stems and "other"."""
    profile = reference.get("stem_profile")
    if not profile or not profile.get("stems"):
        skipped.append({"check": "stem_profile", "why": "the reference has no stem profile"})
        return []
    if live.stems_seen < policy.min_samples:
        skipped.append(
            {
                "check": "stem_profile",
                "why": (
                    f"only {live.stems_seen} scored items carry input_stats.top_stems "
                    f"(need {policy.min_samples})"
                ),
            }
        )
        return []
    stems = profile["stems"]
    ref_counts = [*profile["counts"], profile["other"]]
    live_known = [live.stems.get(stem, 0) for stem in stems]
    live_counts = [*live_known, sum(live.stems.values()) - sum(live_known)]
    result = compare_counts(ref_counts, live_counts, policy.thresholds)
    return [
        Check(
            "stem_profile",
            KIND_INPUT,
            result.status,
            _describe(
                TITLES["stem_profile"],
                result,
                f" over the reference's top {len(stems)} stems + other",
            ),
            result,
            details={"live_items": live.stems_seen},
        )
    ]


def prediction_checks(live: LiveData, reference: dict[str, Any], policy: Policy) -> list[Check]:
    """Predicted-class distribution (chi-square + PSI) and confidence (KS + PSI)."""
    classes = list(reference["classes"])
    extra = sorted(set(live.predicted) - set(classes))
    names = classes + extra
    ref_counts = [reference["predictions"]["counts"].get(c, 0) for c in names]
    live_counts = [live.predicted.get(c, 0) for c in names]
    result = compare_counts(ref_counts, live_counts, policy.thresholds)
    shares = {
        c: round(n / max(1, sum(live_counts)), 4) for c, n in zip(names, live_counts, strict=True)
    }
    checks = [
        Check(
            "predictions",
            KIND_PREDICTION,
            result.status,
            _describe(TITLES["predictions"], result),
            result,
            details={"live_shares": shares},
        )
    ]
    if live.confidence.n >= policy.min_samples:
        conf = compare_continuous(
            reference["confidence"],
            live.confidence.sample.values,
            live.confidence.counts,
            policy.thresholds,
        )
        live_median = float(np.median(live.confidence.sample.values))
        ref_median = reference["confidence"]["quantiles"].get("p50")
        checks.append(
            Check(
                "confidence",
                KIND_PREDICTION,
                conf.status,
                _describe(
                    TITLES["confidence"],
                    conf,
                    f" (median live {_fmt(live_median)} vs reference {_fmt(ref_median)})",
                ),
                conf,
                details={"live_median": round(live_median, 6), "reference_median": ref_median},
            )
        )
    return checks


def error_check(live: LiveData, policy: Policy) -> Check:
    rate = live.error_rate
    status = WARN if live.total >= policy.min_samples and rate > policy.max_error_rate else OK
    return Check(
        "error_rate",
        KIND_ERRORS,
        status,
        f"{live.rejected} rejected requests beside {live.ok} scored items "
        f"({rate:.2%} rejected; warn above {policy.max_error_rate:.2%})",
        details={"rejected": live.rejected, "total": live.total, "rate": round(rate, 6)},
    )


def accuracy_check(
    accuracy: Accuracy, policy: Policy, skipped: list[dict[str, str]]
) -> list[Check]:
    if accuracy.labels < policy.min_labels:
        skipped.append(
            {
                "check": "accuracy",
                "why": (
                    f"{accuracy.labels} feedback labels joined to predictions in the window "
                    f"(need {policy.min_labels}; send them through the wrapper's feedback endpoint "
                    "or `cdl monitor feedback`)"
                ),
            }
        )
        return []
    value = accuracy.accuracy or 0.0
    status = DRIFT if value < policy.accuracy_floor else OK
    return [
        Check(
            "accuracy",
            KIND_ACCURACY,
            status,
            f"live accuracy {value:.2%} on {accuracy.labels} labelled items "
            f"(gate {policy.accuracy_floor:.2%}) -> {status}",
            details=accuracy.as_dict(),
        )
    ]


def evaluate(
    live: LiveData,
    reference: dict[str, Any] | None,
    reference_note: str,
    accuracy: Accuracy,
    policy: Policy,
) -> tuple[list[Check], list[dict[str, str]]]:
    """All checks that can run, and the skipped ones with the reason."""
    skipped: list[dict[str, str]] = []
    checks: list[Check] = [error_check(live, policy)]
    if reference is None:
        skipped.append({"check": "drift checks", "why": reference_note})
    if live.ok < policy.min_samples:
        skipped.append(
            {
                "check": "drift checks",
                "why": (
                    f"only {live.ok} scored items in the window (need monitoring.min_samples="
                    f"{policy.min_samples} to judge drift)"
                ),
            }
        )
    elif reference is not None:
        checks += feature_checks(live, reference, policy, skipped)
        if live.task == "text":
            checks += stem_check(live, reference, policy, skipped)
        checks += prediction_checks(live, reference, policy)
    checks += accuracy_check(accuracy, policy, skipped)
    return checks, skipped


def verdict_of(checks: list[Check], judged: bool) -> str:
    """The worst status; ``insufficient-data`` when drift could not be judged (too few items
    or no reference) and no check that ran found a problem."""
    worst = max((SEVERITY[check.status] for check in checks), default=0)
    if not judged and worst == 0:
        return INSUFFICIENT
    return {0: OK, 1: WARN, 2: DRIFT}[worst]


def reasons(checks: list[Check]) -> list[Check]:
    """The checks that found a problem, drift before warnings."""
    found = [check for check in checks if check.status in (WARN, DRIFT)]
    return sorted(found, key=lambda check: -SEVERITY[check.status])


def re_entry(checks: list[Check]) -> dict[str, str] | None:
    """Where to re-enter the workflow, from the kinds of the drift-level checks."""
    kinds = {check.kind for check in checks if check.status == DRIFT}
    if KIND_INPUT in kinds:
        return {
            "pipeline": "data",
            "why": (
                "live inputs no longer look like the training data: collect and label new data "
                "that reflects them (data pipeline), then retrain and evaluate on it (model "
                "pipeline)"
            ),
        }
    if KIND_PREDICTION in kinds:
        return {
            "pipeline": "data",
            "why": (
                "the model's predictions shifted while its inputs look alike: the class mix or "
                "the meaning of the labels may have changed; label recent inputs (data pipeline) "
                "and retrain"
            ),
        }
    if KIND_ACCURACY in kinds:
        return {
            "pipeline": "model",
            "why": (
                "inputs look like the training data but live accuracy is below the gate: revisit "
                "the model on the current data version (model pipeline: new experiment or "
                "hyperparameter search)"
            ),
        }
    return None


def episode_key(model: str, version: str, verdict: str, found: list[Check]) -> str:
    """``model:vN:verdict:kinds``: one maintenance issue per episode."""
    kinds = ",".join(sorted({check.kind for check in found if check.status == verdict}))
    return f"{model}:v{version}:{verdict}:{kinds or '-'}"
