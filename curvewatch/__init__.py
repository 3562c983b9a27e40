"""Curvewatch's public API: `import curvewatch` (the logging API and the diagnosis engine).

Integrations (curvewatch.lightning, curvewatch.transformers) are imported only by the users
who ask for them; this module never imports them.
"""
from diagnosis import diagnose
from tracking import Run, default_runs_dir, list_runs, read_run

__version__ = "0.1.0"

__all__ = ["Run", "__version__", "default_runs_dir", "diagnose", "list_runs", "read_run"]
