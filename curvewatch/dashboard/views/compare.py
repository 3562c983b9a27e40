"""Compare page: 2 to 20 runs. Overlay and small multiples of any metric (smoothing, log
axis, epoch / step / wall-time axis), the hyperparameters that differ, a summary table, and
group aggregation (mean ± sd) for folds, seeds and sweeps. One colour per run everywhere."""
import streamlit as st

from curvewatch.dashboard import actions, data, figures, live_chart, state, tables
from curvewatch.dashboard.series import DEFAULT_SMOOTHING, MAX_SMOOTHING
from curvewatch.tracking.aggregate import score_words, setting_words
from curvewatch.tracking.groups import group_headline

MAX_RUNS = 20


@st.cache_resource(max_entries=16, show_spinner=False)
def run_figure(kind: str, runs: tuple, column: str, labels: tuple, colors: tuple,
               smoothing: float, x: str, log_y: bool):
    """The overlay (figures.compare_figure) or small multiples of `runs` ((id, folder,
    steps_per_epoch, metrics.jsonl's (mtime, size)) each), built once per state of their
    files and view settings: building 20 runs' figures was most of a rerun (0.4-0.8 s at
    10,000 epochs). st.plotly_chart only serialises it; nothing changes a cached figure."""
    hs = {rid: figures.with_steps(data.load_history(path), spe) for rid, path, spe, _ in runs}
    build = figures.compare_figure if kind == "overlay" else figures.small_multiples_figure
    return build(hs, column, labels=dict(labels), colors=dict(colors), smoothing=smoothing,
                 x=x, log_y=log_y)



def render_group(group) -> None:
    """A run group's record: method, members by state, the aggregate scores (mean ± sd over
    the members' best epochs), the aggregate curve, and the sweep's ranking."""
    st.subheader(f"Group {tables.md(group.name or group.id)}")
    counts = " · ".join(f"{n} {s.replace('_', ' ')}" for s, n in group.counts.items())
    st.markdown(f"{tables.state_badge(group.state)} {tables.md(group.id)} · "
                f"{tables.md(group.method)}"
                + (f" · {tables.md(group.validation)}" if group.validation else "")
                + (f" · members: {counts}" if counts else ""))
    _group_link(group.id, "Open the group page (members, score, ranking)")
    if group.problem:
        st.error(f"This group's record cannot be read: {tables.md(group.problem)}")
        return
    agg = group.aggregate
    if agg is None:
        st.info("No member has finished an epoch yet.")
        return
    if group.method == "sweep":  # judged per setting: the ranking, no mean across settings
        st.markdown(f"**Ranking of the settings** (best val loss): "
                    f"{tables.md(group_headline(group))}")
        return
    if agg.scores:
        cols = st.columns(min(4, len(agg.scores)))
        for col, (metric, sc) in zip(cols, agg.scores.items(), strict=False):  # the first 4
            col.metric(f"{metric} (best epoch), mean ± sd",
                       score_words(sc, ".4g", count=False),
                       help=f"over {sc.get('n')} member(s)" + (" so far" if agg.live else ""))
    if agg.curves is not None and not agg.curves.empty:
        cols = [c[:-5] for c in agg.curves.columns if c.endswith("_mean")]
        pick = "val_loss" if "val_loss" in cols else (cols[0] if cols else None)
        if pick:
            st.plotly_chart(figures.aggregate_curve_figure(agg.curves, pick,
                                                           label=group.name or "group"),
                            key="compare-chart-group-aggregate", theme=live_chart.THEME)


def _group_link(gid: str, label: str) -> None:
    try:
        st.page_link(state.page("group"), label=label, icon=":material/stacks:",
                     query_params={state.QP_GROUP: gid})
    except st.errors.StreamlitAPIException:  # page run on its own (no navigation)
        st.markdown(f"[{tables.md(label)}](/group?group={gid})")


state.ensure_state()
root = data.runs_dir()
st.title("Compare")
group_id = st.query_params.get(state.QP_GROUP)
group = data.load_group(root, group_id) if group_id else None
if group_id and group is None:
    st.warning(f"There is no run group {tables.md(group_id)} in {tables.md(root)}.")
if group is not None:
    render_group(group)

runs = data.list_runs(root)
readable = [r for r in runs if r.state != "unreadable"]
if len(readable) < 2:
    st.info("Compare needs at least two readable runs in "
            f"`{root}`. Start some on the Launch page or with "
            f"`{actions.SHELL_TRAINER} demo --runs-dir {root}`.")
    st.stop()
by_id = {r.id: r for r in readable}

wanted = [rid for rid in state.qp_list(state.QP_RUNS) if rid in by_id]
unknown = [rid for rid in state.qp_list(state.QP_RUNS) if rid not in by_id]
if unknown:
    st.warning(f"Not runs in {tables.md(root)} (ignored): {tables.md(', '.join(unknown))}")
if not wanted and group is not None:
    wanted = [rid for rid in group.run_ids if rid in by_id]
if state.CMP_RUNS not in st.session_state:
    st.session_state[state.CMP_RUNS] = wanted[:MAX_RUNS]
selected = st.multiselect("Runs (2 to 20)", list(by_id), key=state.CMP_RUNS,
                          max_selections=MAX_RUNS,
                          format_func=lambda rid: f"{by_id[rid].name} · {rid}")
if selected:
    st.query_params[state.QP_RUNS] = ",".join(selected)
if len(selected) < 2:
    st.error("Select at least two runs to compare: pick them in the box above, or tick "
             "their rows on the Runs page and press Compare.")
    st.stop()

sel = [by_id[rid] for rid in selected]
colors = figures.run_colors(selected)
names = [r.name for r in sel]
labels = {r.id: (r.name if names.count(r.name) == 1 else f"{r.name} ({r.id[-4:]})")
          for r in sel}
# a run that logged no step counts gets them from its iterations per epoch when known
histories = {r.id: figures.with_steps(data.load_history(r.path), r.data.get("steps_per_epoch"))
             for r in sel}
columns = sorted({c for h in histories.values() for c in h.columns}
                 - {"epoch", "step", "time", "absent"},
                 key=lambda c: (not c.startswith("val_"), not c.endswith("loss"), c))
if not columns:
    st.info("None of these runs has finished an epoch yet.")
    st.stop()

c1, c2, c3, c4 = st.columns([2, 2, 1, 2])
with c1:
    qp_metric = st.query_params.get(state.QP_METRIC)
    column = st.selectbox("Metric", columns, key=state.CMP_METRIC,
                          index=columns.index(qp_metric) if qp_metric in columns else 0)
with c2:
    # x, smoothing and log y live in the URL (bind), as on the Run page: a link shares the view
    smoothing = st.slider("Smoothing (EMA)", 0.0, MAX_SMOOTHING, DEFAULT_SMOOTHING, 0.01,
                          key=state.QP_SMOOTH, bind="query-params",
                          help="TensorBoard's debiased EMA (exponential moving average), "
                          "display only; 0 draws the values as logged")
with c3:
    log_y = st.toggle("Log y", key=state.QP_LOG, bind="query-params")
with c4:
    x = st.radio("x axis", ["epoch", "step", "time"], horizontal=True, key=state.QP_X,
                 bind="query-params")
st.query_params[state.QP_METRIC] = column

drawable = {rid: h for rid, h in histories.items() if figures.has_axis(h, x)}
if len(drawable) < len(histories):
    left_out = ", ".join(labels[rid] for rid in histories if rid not in drawable)
    why = ("logged no step counts and run.json gives no steps_per_epoch" if x == "step"
           else f"logged no {x} values")
    st.warning(f"Not drawn on the {x} axis, because they {why}: {tables.md(left_out)}. "
               "Choose x axis = epoch to see every run.", icon=":material/visibility_off:")
tab_overlay, tab_multi = st.tabs(["Overlay", "Small multiples"])
if not any(column in h.columns for h in drawable.values()):
    st.info(f"None of the runs drawn on the {x} axis has {tables.md(column)}.")
else:
    drawn = tuple((rid, str(by_id[rid].path), by_id[rid].data.get("steps_per_epoch"),
                   data.file_state(by_id[rid].path / data.METRICS_FILE)) for rid in drawable)
    view = (tuple(labels.items()), tuple(colors.items()), smoothing, x, log_y)
    with tab_overlay:
        st.plotly_chart(run_figure("overlay", drawn, column, *view),
                        key="compare-chart-overlay", theme=live_chart.THEME)
    with tab_multi:
        pair = column.split("_", 1)[1] if column.startswith(("train_", "val_", "test_")) \
            else None
        metric = pair or column  # a metric without a train/val pair is drawn as it is
        st.plotly_chart(run_figure("multiples", drawn, metric, *view),
                        key="compare-chart-multiples", theme=live_chart.THEME)

st.subheader("Hyperparameters that differ")
diff = tables.hparam_diff(sel, labels)
if diff.shape[1] <= 1:
    st.info("These runs have the same configuration.")
else:
    st.dataframe(diff.style.set_properties(
        subset=[c for c in diff.columns if c != "run"],
        **{"background-color": "rgba(255, 221, 87, 0.35)", "font-weight": "600"}),
        hide_index=True, placeholder=tables.MISSING, key="compare-diff")

st.subheader("Summary")
rows = []
for r in sel:
    flags = data.run_flags(r)
    rows.append({"run": labels[r.id], "state": tables.state_label(r.state),
                 **tables.summary_row(histories[r.id], flags)})
st.dataframe(rows, hide_index=True, placeholder=tables.MISSING, key="compare-summary",
             column_config={c: st.column_config.NumberColumn(format="%.4f")
                            for c in ("best val loss", "final train loss", "final val loss",
                                      "final gap (val-train)", "best val acc")})

st.subheader("Groups")
for gid in sorted({r.group for r in sel if r.group and data.is_group(root, r.group)}):
    _group_link(gid, f"Open group {gid}")
# a band averages the members of one recorded group (folds, seeds, a sweep's setting),
# never unrelated runs: runs without a group, or alone in theirs here, get none
# and a sweep is judged per setting: one band per setting, never across settings
setting_of = {m.run_id: setting_words(m.params) for g in data.list_groups(root)
              if g.method == "sweep" for m in g.members if m.run_id}
band_of = {r.id: r.group + (f" · {setting_of[r.id]}" if r.id in setting_of else "")
           for r in sel if r.group and r.id in drawable}
members: dict[str, list] = {}
for rid, band in band_of.items():
    members.setdefault(band, []).append(drawable[rid])
banded = {g: hs for g, hs in members.items() if len(hs) >= 2}
alone = [labels[r.id] for r in sel if band_of.get(r.id) not in banded]
if not banded:
    st.info("No two of these runs belong to the same run group (k-fold, bootstrap, seeds, "
            "a sweep), so there is no group band to draw: a band is the spread of one "
            "group's members, never of unrelated runs.")
else:
    if alone:
        st.caption(f"Not in a band (no group, or the only run of its group here): "
                   f"{tables.md(', '.join(alone))}")
    st.plotly_chart(figures.group_band_figure(banded, column, smoothing=smoothing, x=x,
                                              log_y=log_y),
                    key="compare-chart-groups", theme=live_chart.THEME)
