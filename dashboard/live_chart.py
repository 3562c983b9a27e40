"""A plotly chart that keeps the user's zoom across live refreshes.

On the Streamlit version we pin (1.67), `st.plotly_chart` derives the element's identity from
the figure itself, so every refresh with new data remounts the chart and resets zoom, even
with `key=` and `layout.uirevision` set (streamlit#5107; PR #16052 is the open fix). A custom
component keeps its identity by `key`, so this one stays mounted and redraws in place with
`Plotly.react`, which honours `uirevision`.

The component is a single static page (chart_component/index.html) plus the plotly.js that
ships inside the plotly Python package, copied once into a cache folder: no build step, no
network. If that folder cannot be made, charts fall back to `st.plotly_chart`.
"""
from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import plotly
import plotly.graph_objects as go
import streamlit as st

HERE = Path(__file__).resolve().parent / "chart_component"


def _plotly_js() -> Path:
    return Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"


@functools.lru_cache(maxsize=1)
def _component():
    """Declare the component once per process; None when its assets cannot be prepared."""
    import streamlit.components.v1 as components
    try:
        index = (HERE / "index.html").read_bytes()
        tag = hashlib.sha1(index + plotly.__version__.encode()).hexdigest()[:10]
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        for parent in (base / "curvewatch", Path(tempfile.gettempdir()) / "curvewatch"):
            try:
                target = parent / f"chart-{tag}"
                if not (target / "plotly.min.js").exists():
                    tmp = Path(tempfile.mkdtemp(dir=_mkdir(parent)))
                    shutil.copyfile(HERE / "index.html", tmp / "index.html")
                    shutil.copyfile(_plotly_js(), tmp / "plotly.min.js")
                    try:
                        tmp.rename(target)
                    except OSError:  # another process made it first
                        shutil.rmtree(tmp, ignore_errors=True)
                return components.declare_component("curvewatch_chart", path=str(target))
            except OSError:
                continue
    except OSError:
        return None
    return None


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def chart(fig: go.Figure, *, key: str, live: bool, config: dict[str, Any] | None = None
          ) -> None:
    """Draw `fig`: in place (zoom kept) while `live`, else with st.plotly_chart."""
    comp = _component() if live else None
    if comp is None:
        st.plotly_chart(fig, key=key, theme=None, config=config or {"displaylogo": False})
        return
    with st.container(key=key):
        comp(spec=fig.to_json(), height=int(fig.layout.height or 400), config=config or {},
             key=f"{key}-live", default=None)
