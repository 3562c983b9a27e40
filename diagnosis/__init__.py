"""Curvewatch diagnosis: pure analysis of learning curves.

    from diagnosis import diagnose, Finding, Thresholds, KINDS
    findings = diagnose(history, thresholds=None, layers=None)

No file access, no torch, no streamlit: numpy, pandas and the standard library only.
"""

from .engine import ABSENT, COLUMNS, STOP_KINDS, diagnose, should_stop, stopping_finding
from .findings import KINDS, SEVERITIES, Finding
from .thresholds import Thresholds

__all__ = ["diagnose", "should_stop", "stopping_finding", "Finding", "Thresholds", "KINDS", "SEVERITIES", "STOP_KINDS", "COLUMNS", "ABSENT"]
