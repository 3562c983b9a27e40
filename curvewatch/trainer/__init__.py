"""Curvewatch's PyTorch trainer: `python -m trainer run|list|stop|resume` (see cli.py)."""
