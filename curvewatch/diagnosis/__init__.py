"""Curvewatch diagnosis: pure analysis of learning curves.

    from curvewatch.diagnosis import diagnose, Finding, Thresholds, KINDS
    findings = diagnose(history, thresholds=None, layers=None)

No file access, no torch, no streamlit: numpy, pandas and the standard library only (and
scipy's optimizer in `forecast`, imported on its first call).
"""

from .detectors import KINDS, SPAN_KINDS, STOP_KINDS
from .engine import ABSENT, COLUMNS, diagnose, should_stop, stopping_finding
from .findings import SEVERITIES, Finding
from .forecast import Forecast, forecast, with_forecast  # scipy: imported on the first forecast
from .thresholds import Thresholds

__all__ = ["diagnose", "should_stop", "stopping_finding", "Finding", "Thresholds", "KINDS", "SEVERITIES", "STOP_KINDS", "SPAN_KINDS", "COLUMNS", "ABSENT", "forecast", "Forecast", "with_forecast"]
