"""Curvewatch dashboard entry from a checkout; the app itself is curvewatch/ui/app.py (inside
the installed package, where `curvewatch ui` serves it from).

    streamlit run app.py            # serves on 127.0.0.1 (see .streamlit/config.toml)
    CURVEWATCH_RUNS=/path/to/runs streamlit run app.py
"""
from curvewatch.ui.app import main

main()
