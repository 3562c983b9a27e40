"""Curvewatch dashboard: pages (dashboard/views/), pure figure builders (figures.py), pure
tables (tables.py), cached data access (data.py), the launch/stop/delete actions (actions.py).

Reads runs through `tracking`, judges them through `diagnosis`; starts and stops runs through
the trainer's CLI as a process (never imports the training loop or torch).
"""
