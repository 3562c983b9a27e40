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
import stat
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
        for parent in (base / "curvewatch",
                       Path(tempfile.gettempdir()) / f"curvewatch-{os.getuid()}"):
            try:
                target = _private_dir(parent) / f"chart-{tag}"
                if os.path.islink(target):
                    raise OSError(f"{target} is a symlink")
                if not (target / "plotly.min.js").exists():
                    tmp = Path(tempfile.mkdtemp(dir=parent))
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


def _private_dir(p: Path) -> Path:
    """`p`, created private (0700) if missing, and only if it is a real folder (not a symlink)
    that this user owns and nobody else may write to: the page's JavaScript is served from
    it, so a folder someone else made (a shared /tmp) must never be used. Raises OSError."""
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        p.mkdir(mode=0o700)
    except FileExistsError:
        pass
    st_ = os.lstat(p)
    if not stat.S_ISDIR(st_.st_mode):
        raise OSError(f"{p} is not a folder (or is a symlink)")
    if st_.st_uid != os.getuid() or st_.st_mode & 0o022:
        raise OSError(f"{p} belongs to another user or others may write to it")
    return p


#: st.plotly_chart's theme: Streamlit's, which follows the page's light or dark theme (the
#: browser's preference unless the user picks one) and replaces the figure's backgrounds and
#: text colours; the live component does the same from the theme Streamlit hands it.
THEME = "streamlit"


def chart(fig: go.Figure, *, key: str, live: bool, config: dict[str, Any] | None = None
          ) -> None:
    """Draw `fig`: in place (zoom kept) while `live`, else with st.plotly_chart; either way
    in the page's light or dark theme."""
    comp = _component() if live else None
    if comp is None:
        st.plotly_chart(fig, key=key, theme=THEME, config=config or {"displaylogo": False})
        return
    with st.container(key=key):
        comp(spec=fig.to_json(), height=int(fig.layout.height or 400), config=config or {},
             key=f"{key}-live", default=None)
