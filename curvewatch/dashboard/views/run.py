"""Run page: its notes and actions (stop, resume, clone-and-edit, downloads, delete) under the
header, live curves with the flags drawn on them and every other logged scalar by section,
the view settings in the URL, the findings explained, then config, notes and tags, data and
model, and the log tail."""

import re

import numpy as np
import pandas as pd
import streamlit as st

from curvewatch.dashboard import (
    actions,
    data,
    evidence,
    figures,
    forecast_band,
    live_chart,
    state,
    tables,
)
from curvewatch.dashboard.downsample import SCREEN_POINTS
from curvewatch.dashboard.series import DEFAULT_SMOOTHING, MAX_SMOOTHING
from curvewatch.diagnosis import with_forecast
from curvewatch.tracking.annotate import annotate_run
from curvewatch.tracking.paths import RESUMABLE_STATES

SEVERITY_BOX = {"critical": st.error, "warning": st.warning, "info": st.info}
#: Metrics drawn on a linear axis even with Log y (bounded scores).
LINEAR_METRICS = ("acc", "r2")
#: What a widget key may hold (Streamlit's `.st-key-<key>` CSS class)
KEYSAFE = re.compile(r"[^A-Za-z0-9_-]")
INTERVALS = {"1 s": 1.0, "2 s": 2.0, "5 s": 5.0, "10 s": 10.0, "30 s": 30.0}
#: session state: the run whose epoch span the "Epochs shown" slider holds
EPOCHS_OF = "_epochs-of-run"

state.ensure_state()
root = data.runs_dir()
runs = data.list_runs(root)
if not runs:
    st.title("Run")
    st.info("No runs yet. Start some from the Launch page, or with "
            f"`{actions.SHELL_TRAINER} demo --runs-dir {root}`.")
    st.stop()

by_id = {r.id: r for r in runs}
run_id = state.sidebar_pick("Run", by_id, state.QP_RUN, state.RUN_SELECT, noun="run",
                            where=root, exists=lambda r: data.resolve_run(root, r) is not None)
path = data.resolve_run(root, run_id)
info = by_id[run_id] if path is None else data.tracking.read_run(path)

st.title(tables.md(info.name))  # names, tags, reasons: plain text, never markdown
st.markdown(f"{tables.state_badge(info.state)} {tables.md(info.id)}"
           + (f" · group {tables.md(info.group)}" if info.group else "")
           + (f" · tags: {tables.md(', '.join(info.tags))}" if info.tags else ""))
if info.notes:
    st.caption(tables.md(info.notes))
running = info.state == "running"


def delete_controls(info, running: bool) -> None:
    """Confirm box and Delete button (actions.delete_run refuses a folder whose run is live)."""
    confirm = st.checkbox(f"I want to delete run {info.id} and all its files",
                          key=state.RUN_DELETE_CONFIRM, disabled=running)
    if st.button("Delete run", key=state.RUN_DELETE, type="primary",
                 disabled=running or not confirm):
        try:
            gone = actions.delete_run(root, info.id)
        except Exception as e:
            st.error(f"Not deleted: {e}")
        else:
            st.success(f"Deleted {gone}")
            st.query_params.clear()
            state.go("runs")


def action_bar(info, running: bool, pending: bool = False) -> None:
    """Stop, resume, clone, the downloads and delete in one row under the header; what an
    action answers shows full width below the row. After a stop or resume the page follows
    the run (state.follow); meanwhile (`pending`) neither applies."""
    a = st.columns([1, 1, 1.2, 1.2, 1.4, 1], vertical_alignment="center")
    res = None
    with a[0]:
        if st.button("Stop", key=state.RUN_STOP, disabled=not running or pending,
                     icon=":material/stop:",
                     help="ask the run to stop gracefully after its current epoch"):
            res = actions.stop_run(root, info.id)
            default = "stop requested"
    with a[1]:
        if st.button("Resume", key=state.RUN_RESUME, icon=":material/play_arrow:",
                     disabled=pending or info.state not in RESUMABLE_STATES,
                     help="continue a stopped or crashed run from its last checkpoint, in the "
                          "background"):
            res = actions.resume(root, info.id)
            default = "resuming"
    with a[2]:
        if st.button("Clone and edit", key=state.RUN_CLONE, icon=":material/content_copy:",
                     help="open the Launch form filled in with this run's configuration"):
            st.session_state[state.LAUNCH_PREFILL] = {"config": dict(info.config),
                                                      "name": f"{info.name}-clone"}
            state.go("launch")
    with a[3]:
        best = data.best_checkpoint(path)
        st.download_button("best.pt", (lambda: data.read_best_checkpoint(path)) if best else b"",
                           file_name=f"{info.id}-best.pt", mime="application/octet-stream",
                           key=state.RUN_DOWNLOAD_BEST, icon=":material/download:",
                           disabled=best is None, on_click="ignore",
                           help="the weights of the best epoch" if best else
                           "this run has no best.pt (own loops and imports save none)")
    with a[4]:
        st.download_button("Metrics (CSV)", lambda: tables.history_csv(data.load_history(path)),
                           file_name=f"{info.id}-metrics.csv", mime="text/csv",
                           key=state.RUN_DOWNLOAD, icon=":material/download:",
                           on_click="ignore")
    with a[5]:
        with st.popover("Delete", icon=":material/delete:", disabled=running,
                        help="a running run cannot be deleted; stop it first" if running
                        else "delete this run's folder"):
            delete_controls(info, running)
    if res is not None and res.ok:
        state.expect_change("run", info.id, leaving=info.state,
                            message=res.message or default)
    if res is not None:
        st.error(res.message or default)


if info.state == "unreadable":
    st.error(f"This run folder cannot be read: {tables.md(info.problem)}")
    if path is not None:  # a bad folder can still be removed from here
        delete_controls(info, running=False)
    st.stop()
pending = state.follow("run", info.id, lambda: data.tracking.read_run(path).state)
action_bar(info, running, pending)
if info.group and data.is_group(root, info.group):
    try:
        st.page_link(state.page("group"), label=f"Open its group {tables.md(info.group)}",
                     icon=":material/stacks:", query_params={state.QP_GROUP: info.group})
    except st.errors.StreamlitAPIException:  # page run on its own (no navigation)
        st.caption(f"Part of group {tables.md(info.group)} (Group page: "
                   f"/group?group={tables.md(info.group)}).")
if info.status.get("stop_reason"):
    by = info.status.get("stopped_by") if isinstance(info.status.get("stopped_by"), dict) else {}
    kind = str(by.get("kind", "")).replace("_", " ")
    st.info(f"Stopped early at epoch {info.epoch}"
            + (f" by the {tables.md(kind)} detector (see Diagnosis)." if kind
               else f": {tables.md(info.status['stop_reason'])}"))
if info.state in ("failed", "crashed"):
    err = info.status.get("error")
    st.error(f"The run {info.state}." + ("" if err else
             " The process is gone without writing a final state."))
    if err:
        st.code(err, language="text")

live = False
interval = 2.0
view = st.columns([1.7, 2.2, 0.8, 0.7, 0.8], vertical_alignment="bottom")
if running:
    with view[3]:
        live = st.toggle("Live", value=True, key=state.RUN_LIVE,
                         help="refresh the curves while the run trains")
    with view[4]:
        label = st.selectbox("Every", list(INTERVALS), index=1, key=state.RUN_INTERVAL,
                             disabled=not live, help=tables.REFRESH_HELP)
        interval = INTERVALS[label]
# the view settings live in the URL (bind): a shared link opens the same view; a run that
# logged no step counts (and gives no steps_per_epoch) has no step axis to offer
steps_per_epoch = info.data.get("steps_per_epoch")
try:  # the trainer's own judgement of this run
    thresholds, diagnosis_error = data.thresholds_for(info.config, path), None
except data.DiagnosisFailed as e:
    thresholds, diagnosis_error = None, str(e)
# not followed live: drawn from a cached view (screen-resolution rows, findings and forecast
# of the whole history), so a rerun of a million-epoch run's page reads nothing again
stored = None if live else data.run_view(path, thresholds, steps_per_epoch, info.epochs)
axes = figures.axes_of(stored.history if stored is not None
                       else figures.with_steps(data.load_history(path), steps_per_epoch))
with view[0]:
    x = st.radio("x axis", axes or ["epoch"], horizontal=True, key=state.RUN_X,
                 bind="query-params", help="flags sit where their epochs lie on the chosen axis")
with view[1]:
    smoothing = st.slider("Smoothing", 0.0, MAX_SMOOTHING, 0.0, 0.01, key=state.RUN_SMOOTH,
                          bind="query-params",
                          help="TensorBoard's debiased EMA (exponential moving average), display "
                          "only; flags use raw "
                          f"values. {DEFAULT_SMOOTHING} is a common choice.")
with view[2]:
    log_y = st.toggle("Log y", key=state.RUN_LOG, bind="query-params",
                      help="log scale for losses and the other scalars (accuracy and R² stay "
                      "linear; gradient norms are always on a log scale)")
span = None  # epochs (first, last) drawn at full resolution, when zoomed in
if stored is not None and stored.rows > SCREEN_POINTS and stored.first_epoch is not None \
        and stored.last_epoch is not None and stored.last_epoch > stored.first_epoch:
    whole = (stored.first_epoch, stored.last_epoch)
    # a span belongs to its run: another run (picked in the sidebar) starts whole, and a span
    # outside this run's epochs is dropped rather than drawing nothing
    shown = st.session_state.get(state.QP_EPOCHS)
    reset = st.session_state.get(EPOCHS_OF, run_id) != run_id or (
        shown is not None and not whole[0] <= shown[0] <= shown[1] <= whole[1])
    if reset:  # (value=None then: the default is still the whole run, without a warning)
        st.session_state[state.QP_EPOCHS] = whole
    st.session_state[EPOCHS_OF] = run_id
    picked = st.slider("Epochs shown", whole[0], whole[1], None if reset else whole,
                       key=state.QP_EPOCHS,
                       bind="query-params",
                       help=f"this run has {stored.rows:,} epochs; the charts draw each "
                       f"trace's extremes at screen resolution, and every epoch of a span "
                       f"of at most {SCREEN_POINTS:,}")
    span = None if tuple(picked) == whole else (int(picked[0]), int(picked[1]))


def fit_span(fig, history):
    """A zoomed chart's x axis fixed to the span's rows (flags outside it would widen it)."""
    if span is not None:
        xs = figures.x_values(history, x)
        xs = xs[np.isfinite(xs)]
        if xs.size:
            fig.update_xaxes(range=[float(xs.min()), float(xs.max())])
    return fig


@st.fragment(run_every=interval if live else None)
def live_view() -> None:
    """Headline figures and charts: the part that refreshes itself while the run trains."""
    if live:
        history = data.live_history(path)
        now_info = data.tracking.read_run(path)
        if now_info.state != "running":  # finished since: redraw the whole page once
            st.rerun()
    else:
        history = stored.history if span is None else data.span_history(path, span,
                                                                         steps_per_epoch)
        now_info = info
    history = figures.with_steps(history, steps_per_epoch)
    layers = data.live_layers(path) if live else data.load_layers(path)
    if not live:
        findings, failed = list(stored.findings), diagnosis_error or stored.failed
    else:
        try:
            findings, failed = data.findings_for(history, layers, thresholds, path), \
                diagnosis_error
            findings = with_forecast(findings, history, now_info.epochs)  # "≈ 2% more …"
        except data.DiagnosisFailed as e:
            findings, failed = [], str(e)
    status = now_info.status

    m = st.columns(5)
    epochs = now_info.epochs
    m[0].metric("Epoch", f"{now_info.epoch}/{epochs}" if epochs else f"{now_info.epoch}")
    bvl = now_info.best_val_loss
    m[1].metric("Best val loss", "—" if bvl is None else f"{bvl:.4g}",
                help=None if now_info.best_epoch is None else f"at epoch {now_info.best_epoch}")
    m[1].caption(f"@ epoch {now_info.best_epoch}" if now_info.best_epoch else "")
    latest = status.get("latest") or {}
    lr = latest.get("lr")
    m[2].metric("Learning rate", "—" if not isinstance(lr, (int, float)) else f"{lr:.3g}")
    gn = latest.get("grad_norm")
    m[3].metric("Grad norm", "—" if not isinstance(gn, (int, float)) else f"{gn:.3g}")
    va = latest.get("val_acc", latest.get("val_r2"))
    m[4].metric("Val R²" if "val_r2" in latest and "val_acc" not in latest else "Val acc",
                "—" if not isinstance(va, (int, float)) else f"{va:.4g}")
    if running and now_info.state == "running":
        eta = tables.eta_seconds(status)
        st.progress(min(1.0, now_info.epoch / epochs) if epochs else 0.0,
                    text=f"epoch {now_info.epoch} of {epochs}"
                    + (f" · about {tables.fmt_duration(eta)} left" if eta else ""))

    if history.empty:
        st.info("No epoch has finished yet; the curves appear after the first one.")
        return
    c1, c2 = st.columns([2.3, 1])
    stop_epoch = now_info.epoch if now_info.state == "early_stopped" else None
    metrics = figures.metric_names(history)
    overfitting = any(f.kind == "overfitting" and f.end_epoch is None for f in findings)
    with c1:
        for metric in metrics or ["loss"]:
            try:
                fig = figures.learning_curve_figure(
                    history, findings, metric=metric, smoothing=smoothing, x=x,
                    best_epoch=now_info.best_epoch if metric == "loss" else None,
                    stop_epoch=stop_epoch, log_y=log_y and metric not in LINEAR_METRICS,
                    uirevision=f"{info.id}-{metric}{span or ''}")
                # issue 13: the projection to the end, not where the loss is rising again
                # (overfitting: the learning-curve laws it fits only fall)
                if metric == "loss" and x == "epoch" and not overfitting and span is None:
                    fig.add_traces(forecast_band.band_traces(history, epochs) if live else
                                   forecast_band.traces(stored.band) if stored.band else [])
                live_chart.chart(fit_span(fig, history), key=f"run-chart-{metric}", live=live)
            except ValueError as e:
                st.warning(f"No {metric} curve: {e}")
    with c2:  # the verdict next to the curves it is drawn on
        render_findings(findings, status, failed)
    g1, g2 = st.columns(2)
    with g1:
        if "grad_norm" in history.columns:
            live_chart.chart(fit_span(figures.grad_norm_figure(
                history, findings, x=x, uirevision=f"{info.id}-grad{span or ''}"), history),
                key="run-chart-grad", live=live)
        else:
            st.info(f"No gradient norms logged (columns: {', '.join(history.columns)}).")
    with g2:
        if "lr" in history.columns:
            live_chart.chart(fit_span(figures.lr_figure(
                history, x=x, uirevision=f"{info.id}-lr{span or ''}"), history),
                key="run-chart-lr", live=live)
    steps = data.load_steps(path, live=live)
    if len(steps) and "loss" in steps.columns:
        live_chart.chart(figures.steps_figure(steps, smoothing=smoothing,
                                              uirevision=f"{info.id}-steps"),
                         key="run-chart-steps", live=live)
    draw_scalar_sections(history)
    if not layers.empty and len(layers.columns) > 1:
        live_chart.chart(figures.layer_heatmap_figure(layers, uirevision=f"{info.id}-layers"),
                         key="run-chart-layers", live=live)
        st.caption(figures.LAYER_HEATMAP_CAPTION)


def draw_scalar_sections(history) -> None:
    """Every other logged scalar, a section per name prefix as TensorBoard groups tags."""
    for s, (section, columns) in enumerate(figures.scalar_sections(history).items()):
        with st.container(key=f"run-section-{s}"):
            st.subheader(section if section != "other" else "Other scalars")
            grid = st.columns(3)
            for i, col in enumerate(columns):
                with grid[i % 3]:
                    fig = figures.scalar_figure(history, col, smoothing=smoothing, x=x,
                                                log_y=log_y,
                                                uirevision=f"{info.id}-{col}{span or ''}")
                    live_chart.chart(fit_span(fig, history), live=live,
                                     key=f"run-chart-scalar-{s}-{i}-{KEYSAFE.sub('-', col)}")


def render_findings(findings, status, failed: str | None = None) -> None:
    st.subheader("Diagnosis")
    if failed:  # an error, never "no problems found"
        st.error(tables.md(failed))
        return
    stopped_by = status.get("stopped_by") if isinstance(status.get("stopped_by"), dict) else None
    shown = list(findings)
    if stopped_by and not any(getattr(f, "kind", None) == stopped_by.get("kind") for f in shown):
        shown.insert(0, stopped_by)
    if not shown:
        st.success("No problems found in the curves so far.")
        return
    for f in shown:
        if isinstance(f, dict):  # stopped_by from status.json: text from a file, shown plain
            def get(k, f=f):
                v = f.get(k)
                return tables.md(v) if isinstance(v, str) and k in ("message", "advice") else v
        else:
            def get(k, f=f):
                return getattr(f, k)
        kind, sev = get("kind"), get("severity")
        span = f"epoch {get('start_epoch')}" + (
            f"–{get('end_epoch')}" if get("end_epoch") is not None else " onwards")
        box = SEVERITY_BOX.get(sev, st.info)
        with st.container(border=True, key=f"finding-{kind}"):
            box(f"**{tables.md(kind.replace('_', ' ').capitalize())}** · {tables.md(sev)} · "
                f"{span}\n\n{get('message')}")
            st.markdown(f"**What to try:** {get('advice')}")
            ev = get("evidence")
            if ev:
                with st.expander("Evidence: the figures it was judged on (docs/diagnosis.md)"):
                    st.table(pd.DataFrame(evidence.evidence_rows(kind, ev)).set_index("figure"))


def notes_editor(info) -> None:
    """Notes and tags, saved into run.json by tracking.annotate (a locked read-modify-write:
    the other keys, and a resume's change to them, are kept)."""
    with st.form(f"run-notes-form-{info.id}", border=False):
        notes = st.text_area("Notes", value=info.notes, key=f"{state.RUN_NOTES}-{info.id}",
                             height=120, placeholder="what this run tried, what it showed")
        tags = st.text_input("Tags (comma-separated)", value=", ".join(info.tags),
                             key=f"{state.RUN_TAGS}-{info.id}")
        saved = st.form_submit_button("Save notes and tags", key=state.RUN_SAVE_NOTES)
    if saved:
        try:
            annotate_run(path, notes=notes, tags=tags.split(","))
        except (ValueError, OSError) as e:
            st.error(f"Not saved: {tables.md(e)}")
        else:
            st.rerun()  # the header shows the new tags and notes


live_view()

tab_cfg, tab_notes, tab_data, tab_log = st.tabs(["Config", "Notes & tags", "Data & model",
                                                "Log"])
with tab_cfg:
    st.dataframe(tables.config_rows(info.config), hide_index=True, key="run-config")
with tab_data:
    d = {k: v for k, v in info.data.items() if k != "split_index"}
    c1, c2 = st.columns(2)
    with c1:
        st.markdown("**Data**")
        st.json(d, expanded=True)
    with c2:
        st.markdown("**Model**")
        st.json({k: v for k, v in info.model.items() if k != "text"}, expanded=True)
        if isinstance(info.model.get("text"), str) and info.model["text"]:
            st.code(info.model["text"], language="text")
with tab_log:
    tail = data.tracking.read_log_tail(path)
    st.code(tail[-8000:] if tail else "(no output logged: no trainer.log, and no group log "
            "of this run)", language="text")
with tab_notes:
    notes_editor(info)
