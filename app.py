"""Curvewatch dashboard entry: page setup and navigation, nothing else.

    streamlit run app.py            # serves on 127.0.0.1 (see .streamlit/config.toml)
    CURVEWATCH_RUNS=/path/to/runs streamlit run app.py
"""
import streamlit as st

from dashboard import state

st.set_page_config(page_title="Curvewatch", page_icon="📈", layout="wide")
state.ensure_state()
nav = st.navigation([state.page(name) for name in state.PAGES])
nav.run()
