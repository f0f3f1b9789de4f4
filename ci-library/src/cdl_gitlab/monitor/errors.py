"""Errors of the monitoring commands."""

from __future__ import annotations

from cdl_gitlab.errors import CDLError


class MonitorError(CDLError):
    """Monitoring cannot run: missing reference, unreadable report, bad window, GitLab failure."""


class FeedbackError(MonitorError):
    """A feedback message cannot be matched to a logged prediction or class."""
