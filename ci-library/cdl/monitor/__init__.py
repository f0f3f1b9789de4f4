"""Model monitoring and maintenance: drift reports from Scoring Data, feedback, issues.

- :mod:`cdl.monitor.reference`: reference statistics of a version, computed at packaging.
- :mod:`cdl.monitor.input_stats`: per-request input statistics the serving wrapper stores.
- :mod:`cdl.monitor.report`: ``cdl monitor report`` (drift checks, figures, verdict.json).
- :mod:`cdl.monitor.feedback`: ground-truth labels (``scoring_feedback``), live accuracy.
- :mod:`cdl.monitor.issue`: ``cdl monitor open-issue`` (one GitLab issue per episode).

Exit codes of ``cdl monitor report``: 0 for ``ok``, ``warn`` and ``insufficient-data``,
3 for ``drift``, 1 (or 2 for configuration) on errors.
"""

from cdl.monitor.errors import FeedbackError, MonitorError

DRIFT_EXIT_CODE = 3

__all__ = ["DRIFT_EXIT_CODE", "FeedbackError", "MonitorError"]
