"""Model monitoring and maintenance: drift reports from Scoring Data, feedback, issues.

- :mod:`cdl_gitlab.monitor.reference`: reference statistics of a version, computed at packaging.
- :mod:`cdl_gitlab.features.input_stats` (shared with serving): per-item input statistics.
- :mod:`cdl_gitlab.monitor.drift_report`: ``cdl monitor report`` (drift checks, figures,
  verdict.json).
- :mod:`cdl_gitlab.monitor.feedback`: ground-truth labels (``scoring_feedback``), live accuracy.
- :mod:`cdl_gitlab.monitor.issue`: ``cdl monitor open-issue`` (one GitLab issue per episode).

Exit codes of ``cdl monitor report``: 0 for ``ok``, ``warn`` and ``insufficient-data``,
3 for ``drift``, 1 (or 2 for configuration) on errors.
"""

from cdl_gitlab.monitor.errors import FeedbackError, MonitorError

DRIFT_EXIT_CODE = 3

__all__ = ["DRIFT_EXIT_CODE", "FeedbackError", "MonitorError"]
