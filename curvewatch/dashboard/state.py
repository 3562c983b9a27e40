"""Session-state keys, query-param names and the page registry, declared in one place.

Widget keys have the form `<page>-<name>` with only [a-z0-9_-], so AppTest lookups
(`at.text_input(key=...)`) and the browser's `.st-key-<key>` CSS class use the same string.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Mapping

import streamlit as st

from curvewatch.dashboard.tables import md, state_label

ROOT = Path(__file__).resolve().parent.parent
VIEWS = ROOT / "dashboard" / "views"

# query params (the URL holds the view)
QP_RUN = "run"        # Run page: one run id
QP_RUNS = "runs"      # Compare page / Runs selection: comma-separated run ids
QP_GROUP = "group"    # Group page (and Compare): a run group (k-fold, bootstrap, seeds, sweep)
QP_METRIC = "metric"  # Compare: the column compared
# view settings bound to their widgets (bind="query-params": the widget key is the param),
# so a shared link shows the same view: the Run and Compare pages' x axis, smoothing and log
# y, the Group page's log y
QP_SMOOTH = "smoothing"  # EMA weight
QP_X = "x"               # x axis: epoch, step or time
QP_LOG = "logy"          # log y axis
QP_EPOCHS = "epochs"     # Run page of a long run: the epoch span drawn in full (first, last)

# widget keys
RUNS_STATE = "runs-state"
RUNS_TEXT = "runs-text"
RUNS_TAGS = "runs-tags"
RUNS_SORT = "runs-sort"
RUNS_PAGE = "runs-page"
RUNS_OPEN = "runs-open"
RUNS_COMPARE = "runs-compare"
RUNS_DEMO = "runs-demo"
RUNS_LIVE = "runs-live"

RUN_SELECT = "run-select"
RUN_LIVE = "run-live"
RUN_INTERVAL = "run-interval"
RUN_SMOOTH = QP_SMOOTH
RUN_X = QP_X
RUN_LOG = QP_LOG
RUN_NOTES = "run-notes"
RUN_TAGS = "run-tags"
RUN_SAVE_NOTES = "run-save-notes"
RUN_DOWNLOAD_BEST = "run-download-best"
RUN_STOP = "run-stop"
RUN_RESUME = "run-resume"
RUN_CLONE = "run-clone"
RUN_DOWNLOAD = "run-download"
RUN_DELETE = "run-delete"
RUN_DELETE_CONFIRM = "run-delete-confirm"

GROUP_SELECT = "group-select"
GROUP_LIVE = "group-live"
GROUP_INTERVAL = "group-interval"
GROUP_COMPARE = "group-compare"
GROUP_STOP = "group-stop"
GROUP_RESUME = "group-resume"
GROUP_RESUME_EPOCHS = "group-resume-epochs"
GROUP_LAUNCH_BEST = "group-launch-best"

CMP_RUNS = "compare-runs"
CMP_METRIC = "compare-metric"

LAUNCH_FORM = "launch-form"
LAUNCH_NAME = "launch-name"
LAUNCH_SUBMIT = "launch-submit"
LAUNCH_PREFILL = "launch-prefill"  # session state: a config dict to pre-fill the form (clone)
LAUNCH_RESULT = "launch-result"
LAUNCH_REPEAT = "launch-repeat"
LAUNCH_PARALLEL = "launch-parallel"


def launch_key(option: str) -> str:
    return f"launch-{option.replace('_', '-')}"


def ensure_state() -> None:
    """Create the shared session-state keys (every page calls this first, so each page file
    also runs on its own, e.g. under AppTest)."""
    st.session_state.setdefault(LAUNCH_PREFILL, None)
    st.session_state.setdefault(LAUNCH_RESULT, None)
    st.session_state.setdefault("_history_readers", {})


def page(name: str) -> "st.Page":
    """The st.Page for one of runs, run, group, compare, launch (the same objects in app.py
    and in links)."""
    spec = PAGES[name]
    return st.Page(str(VIEWS / f"{name}.py"), title=spec[0], icon=spec[1], url_path=name,
                   default=(name == "runs"))


PAGES = {
    "runs": ("Runs", ":material/list:"),
    "run": ("Run", ":material/monitoring:"),
    "group": ("Group", ":material/stacks:"),
    "compare": ("Compare", ":material/stacked_line_chart:"),
    "launch": ("Launch", ":material/rocket_launch:"),
}


def go(name: str, **query: str) -> None:
    """Switch to a page with query params; when a page runs on its own (no navigation, e.g.
    in AppTest) it sets the params and reruns instead."""
    try:
        st.switch_page(page(name), query_params=query or None)
    except st.errors.StreamlitAPIException:
        st.query_params.clear()
        st.query_params.update(query)
        st.session_state["_pending_page"] = name
        st.rerun()


def qp_list(name: str) -> list[str]:
    raw = st.query_params.get(name, "")
    return [p for p in str(raw).split(",") if p]


def sidebar_pick(label: str, by_id: Mapping[str, Any], qp: str, key: str, *,
                 exists: Callable[[str], bool], noun: str, where: Path) -> str:
    """The id chosen in a sidebar selectbox over `by_id` (runs or groups: `.name`, `.state`)
    that follows query param `qp`: the URL's id is preselected (one that `exists` rejects gets
    a warning naming the `noun` and `where` it was looked for, and the first id instead), and
    the choice is written back to the URL so it can be shared."""
    wanted = st.query_params.get(qp)
    if wanted and not exists(wanted):
        st.warning(f"There is no {noun} {md(wanted)} in {md(where)}; showing the newest "
                   f"{noun.split()[-1]} instead.")
        wanted = None
    ids = list(by_id)
    # the key carries the URL's id, so opening another id through a link resets the widget
    chosen = st.sidebar.selectbox(
        label, ids, index=ids.index(wanted) if wanted in ids else 0, key=f"{key}-{wanted or ''}",
        format_func=lambda i: f"{by_id[i].name} · {i} · {state_label(by_id[i].state)}")
    if st.query_params.get(qp) != chosen:
        st.query_params[qp] = chosen
    return chosen


# ------------------------------------------------------------------ following an action
#: session state: the change an action started and the page waits for (see expect_change)
PENDING = "_pending-change"
#: how long a page waits for a change before it says the change did not come
PENDING_SECONDS = 90.0
#: session state: ("success" | "warning", text): how the change went, shown once
PENDING_SAID = "_pending-said"


def expect_change(page_name: str, target: str, *, leaving: str, message: str) -> None:
    """After an action on `target` (a run or group id) succeeded: note that `page_name`
    waits for it to leave the state `leaving` (stopped or crashed after a resume, running
    after a stop), then redraw the page. The CLI returns before the process has written its
    new state, so the page follows it (`follow`) instead of showing the state it read
    before the action."""
    st.session_state[PENDING] = {"page": page_name, "target": target, "leaving": leaving,
                                 "message": message,
                                 "until": time.monotonic() + PENDING_SECONDS}
    st.rerun()


def follow(page_name: str, target: str, current_state: Callable[[], str]) -> bool:
    """While an action's change on `target` is pending, check `current_state()` once a
    second (a fragment) and redraw the whole page as soon as it has changed, so the
    header, the Live toggle and the buttons follow by themselves; after PENDING_SECONDS say
    that it did not come. True while pending: the page disables its actions meanwhile."""
    said = st.session_state.pop(PENDING_SAID, None)
    if said:  # the last action's answer, once, on the page that followed it
        (st.success if said[0] == "success" else st.warning)(said[1])
    pending = st.session_state.get(PENDING)
    if not pending or pending["page"] != page_name or pending["target"] != target:
        return False

    @st.fragment(run_every=1.0)
    def _wait() -> None:
        now = current_state()
        if now != pending["leaving"]:
            st.session_state.pop(PENDING, None)
            st.session_state[PENDING_SAID] = ("success", pending["message"])
            st.rerun(scope="app")
        if time.monotonic() > pending["until"]:
            st.session_state.pop(PENDING, None)
            st.session_state[PENDING_SAID] = (
                "warning", f"{pending['message']}, but after {PENDING_SECONDS:g} s it is "
                f"still {now.replace('_', ' ')}; see its log.")
            st.rerun(scope="app")
        st.success(pending["message"])  # what the CLI answered
        st.caption(f"Waiting for it to be no longer {pending['leaving'].replace('_', ' ')}; "
                   "the page follows by itself.")

    _wait()
    return PENDING in st.session_state
