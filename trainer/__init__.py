"""`python -m trainer` from a checkout: a shim for `python -m curvewatch.trainer` (the trainer
lives in curvewatch/trainer/, so an installed wheel claims no generic top-level name)."""
