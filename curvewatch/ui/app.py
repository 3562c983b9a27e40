"""Curvewatch dashboard entry: page setup and navigation, nothing else.

    curvewatch ui --runs-dir DIR    # what the installed command serves
    streamlit run app.py            # the same, from a checkout (app.py calls main)
"""
import streamlit as st

from curvewatch.dashboard import state


def main() -> None:
    st.set_page_config(page_title="Curvewatch", page_icon="📈", layout="wide")
    state.ensure_state()
    nav = st.navigation([state.page(name) for name in state.PAGES])
    nav.run()


if __name__ == "__main__":  # `streamlit run` runs this file as __main__
    main()
