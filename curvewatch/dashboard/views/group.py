"""Group page: one run group (k-fold or bootstrap validation, repeated seeds, a sweep) as one
thing with spread. Each metric as the members' mean with a ±1 sd band and the members as
thin lines; the members' table (state, best epoch, best val loss, flags); the
cross-validated score; for sweeps the ranking of settings, a parallel-coordinates plot of
hyperparameters against the score, and the best setting one click away from Launch.

Numbers come from tracking.aggregate_group(live=True), the same function the group runner
uses for its record, so the page and the CLI agree; live while members train."""
import streamlit as st

from curvewatch.dashboard import actions, data, figures, live_chart, state, tables
from curvewatch.diagnosis.group_findings import group_findings
from curvewatch.tracking.aggregate import score_words, setting_words
from curvewatch.tracking.groups import group_headline, group_progress, ranking_entries, state_words
from curvewatch.tracking.paths import RESUMABLE_STATES

INTERVALS = {"2 s": 2.0, "5 s": 5.0, "10 s": 10.0, "30 s": 30.0}
#: metrics drawn, in this order, when the members logged them
CHART_METRICS = ("val_loss", "val_acc", "val_r2", "train_loss", "train_acc", "train_r2",
                 "grad_norm", "lr")
#: What this page's own controls do about a group finding (its advice names the CLI).
PAGE_REMEDY = {"still_improving": "From this page, once the group has ended: set **Epochs in "
                                  "all** below and press **Resume group**."}

state.ensure_state()
root = data.runs_dir()
groups = data.list_groups(root)
st.title("Group")
if not groups:
    st.info("No run groups in this runs directory yet. A group is started by "
            "`--validation kfold:K` or `bootstrap:B`, `--repeat N`, or a sweep:")
    st.code(f"{actions.SHELL_TRAINER} run --runs-dir {root} --validation kfold:5 --detach\n"
            f"{actions.SHELL_TRAINER} sweep --runs-dir {root} --grid lr=1e-3,1e-2 --parallel 2 "
            "--detach", language="bash")
    st.stop()

by_id = {g.id: g for g in groups}
gid = state.sidebar_pick("Group", by_id, state.QP_GROUP, state.GROUP_SELECT, noun="run group",
                         where=root, exists=lambda g: data.load_group(root, g) is not None)


def _header(group) -> None:
    counts = " · ".join(f"{n} {tables.state_label(s)}" for s, n in group.counts.items())
    st.markdown(f"{tables.state_badge(group.state)} {tables.md(group.id)} · "
                f"**{tables.md(group.method)}**"
                + (f" · validation {tables.md(group.validation)}" if group.validation else "")
                + (f" · {group.repeat} seeds" if group.repeat > 1 else "")
                + (f" · {group.parallel} at a time" if group.parallel > 1 else "")
                + (f" · members: {counts}" if counts else ""))
    if group.stop_reason:
        st.info(f"Stopped: {tables.md(group.stop_reason)}")


def _members_table(rows: list[dict]) -> None:
    frame = [{**r, "state": tables.state_label(r["state"]),
              "flags": tables.flag_badges(r["flags"]),
              "open": f"/run?run={r['run_id']}" if r["run_id"] else None} for r in rows]
    used = [c for c in ("fold", "seed", "setting", "params")
            if any(r.get(c) not in (None, "") for r in rows)]
    if "seed" in used and len({r.get("seed") for r in rows}) == 1:
        used.remove("seed")
    st.dataframe(frame, hide_index=True, placeholder=tables.MISSING, key="group-members",
                 column_order=["open", "member", "name", "state", *used, "progress", "epoch",
                               "best epoch", "best val loss", "best val acc", "flags",
                               "error", "run_id"],
                 column_config={
                     "open": st.column_config.LinkColumn("open", display_text="open ↗",
                                                         width="small"),
                     "progress": st.column_config.ProgressColumn(
                         "progress", min_value=0.0, max_value=1.0, format="percent"),
                     "best val loss": st.column_config.NumberColumn(format="%.4f"),
                     "best val acc": st.column_config.NumberColumn(format="%.4f"),
                     "flags": st.column_config.TextColumn(
                         "flags", help=tables.FLAGS_HELP)})


def _spread_score(group, scores: dict, live: bool) -> None:
    """Folds, resamples, seeds: one setting repeated, so the mean ± sd over the members."""
    st.subheader("Cross-validated score" if group.method in ("kfold", "bootstrap")
                 else "Score over the members")
    cols = st.columns(3)
    cols[0].metric("best val loss, mean ± sd", score_words(scores.get("val_loss"), count=False),
                   help="each counted member's lowest validation loss; population sd")
    acc_key = "val_acc" if "val_acc" in scores else ("val_r2" if "val_r2" in scores else None)
    cols[1].metric(f"{acc_key or 'val_acc'} at the best epoch, mean ± sd",
                   score_words(scores.get(acc_key) if acc_key else None, count=False))
    n = (scores.get("val_loss") or {}).get("n") or 0
    cols[2].metric("members counted", f"{n} of {len(group.members)}",
                   help="completed, early-stopped and stopped members"
                   + (" and, while the group runs, running ones" if live else "")
                   + "; failed and crashed members are listed, not counted")


def _sweep_verdict(group, live: bool) -> None:
    """A sweep is judged per setting: its ranking is the headline, never a mean across
    different settings."""
    st.subheader("Best setting")
    entries = ranking_entries(group.aggregate.ranking) if group.aggregate is not None else []
    scored = [e for e in entries if (e.get("val_loss") or {}).get("mean") is not None]
    cols = st.columns(3)
    cols[0].metric("best setting", setting_words(scored[0]["params"]) if scored else "—")
    cols[1].metric("its best val loss", score_words(scored[0]["val_loss"], count=False)
                   if scored else "—",
                   help="the lowest validation loss of each of the setting's members "
                   "(mean ± population sd when the setting has several)")
    cols[2].metric("settings scored", f"{len(scored)} of {len(group.settings)}",
                   help="settings with a member that finished an epoch"
                   + (" (so far)" if live else ""))
    st.markdown(tables.md(group_headline(group)), help="each setting's best val loss, best "
                "first; ± sd only where a setting has several runs")


def _group_findings(group, rows: list[dict]) -> None:
    """What every member says together (diagnosis.group_findings), with its advice."""
    for f in group_findings([{kind for kind, _ in r["flags"]} for r in rows],
                            method=group.method, best_epochs=[r["best epoch"] for r in rows],
                            epochs=[r["epochs done"] for r in rows], group=group.id,
                            trainer=actions.SHELL_TRAINER):
        with st.container(border=True, key=f"group-finding-{f.kind}"):
            # the words are diagnosis's own (the group id in them is a checked run id)
            st.warning(f"**{f.kind.replace('_', ' ').capitalize()}** in every member · "
                       f"{f.message}")
            st.markdown(f"**What to try:** {f.advice}")
            if f.kind in PAGE_REMEDY:
                st.caption(PAGE_REMEDY[f.kind])


def _charts(group, rows: list[dict], live: bool) -> None:
    """Each metric: folds / seeds as their mean ± sd over the members; a sweep per setting."""
    agg = group.aggregate
    histories = data.member_histories(root, group, live=live)
    names = {r["run_id"]: (f"fold {r['fold']}" if r["fold"] is not None else r["name"])
             for r in rows if r["run_id"]}
    curves = agg.curves if agg is not None else None
    available = [m for m in CHART_METRICS
                 if curves is not None and f"{m}_mean" in curves.columns]
    if not available:
        st.info("No member has finished an epoch yet.")
        return
    by_setting: dict[str, dict] = {}
    for m in group.members:
        if group.method == "sweep" and m.run_id in histories:
            by_setting.setdefault(setting_words(m.params), {})[names.get(m.run_id, m.run_id)] \
                = histories[m.run_id]
    log_y = st.session_state.get(state.QP_LOG, False)  # bound to ?logy= (a shared view)
    grid = st.columns(2)
    for i, metric in enumerate(available):
        log = metric == "lr" or (log_y and not metric.endswith(("acc", "r2")))
        with grid[i % 2]:
            if by_setting:
                fig = figures.setting_curves_figure(by_setting, metric, log_y=log,
                                                    uirevision=f"{group.id}-{metric}")
            else:
                fig = figures.group_metric_figure(
                    curves, metric, {names.get(rid, rid): h for rid, h in histories.items()},
                    label=f"mean of {int(curves['n'].max()) if 'n' in curves else ''}",
                    log_y=log, uirevision=f"{group.id}-{metric}")
            live_chart.chart(fig, key=f"group-chart-{metric}", live=live)


def _body(group, live: bool) -> None:
    """Everything that changes while members train (redrawn by the fragment's ticks)."""
    agg = group.aggregate
    rows = data.member_rows(root, group)
    _header(group)
    if group.problem:
        st.error(f"This group's record cannot be read: {tables.md(group.problem)}")
    progress = group_progress([(r["state"], r["epochs done"], r["epochs planned"])
                               for r in rows])
    st.progress(progress.fraction, text=progress.text)

    if group.method == "sweep":
        _sweep_verdict(group, live)
    else:
        _spread_score(group, agg.scores if agg is not None else {}, live)
    _group_findings(group, rows)

    _charts(group, rows, live)

    st.subheader("Members")
    _members_table(rows)
    failed = [r for r in rows if r["state"] in ("failed", "crashed") and r["error"]]
    for r in failed:
        st.error(f"Member {r['member']} ({tables.md(r['name'])}) "
                 f"{tables.md(state_words(r['state']))}: "
                 f"{tables.md(r['error'])}")

    if group.method == "sweep" and agg is not None and not agg.ranking.empty:
        st.subheader("Ranking of the settings")
        st.caption("by mean best validation loss over each setting's members (best first)")
        rank = agg.ranking.copy()
        rank["params"] = [setting_words(p or {}) for p in rank["params"]]
        rank["members"] = [len(m) if isinstance(m, (list, tuple)) else m
                           for m in rank["members"]]
        for col in [c for c in rank.columns if c.endswith("_std")]:  # no sd of one run
            if f"{col[:-4]}_n" in rank.columns:
                rank.loc[rank[f"{col[:-4]}_n"].fillna(0) < 2, col] = None
        st.dataframe(rank, hide_index=True, placeholder=tables.MISSING,
                     key="group-ranking",
                     column_config={c: st.column_config.NumberColumn(format="%.4f")
                                    for c in rank.columns if c.endswith(("_mean", "_std"))})
        if "val_loss_mean" in agg.ranking.columns and \
                agg.ranking["val_loss_mean"].notna().any():
            st.plotly_chart(figures.parallel_coordinates_figure(agg.ranking),
                            key="group-chart-parallel", theme=live_chart.THEME)


group = data.load_group(root, gid)
if group is None:
    st.error(f"Group {tables.md(gid)} cannot be read.")
    st.stop()
st.header(tables.md(group.name or group.id))
running = group.state == "running"
live = False
if running:
    c1, c2, c3, _ = st.columns([1, 1, 1, 3])
    with c1:
        live = st.toggle("Live", value=True, key=state.GROUP_LIVE,
                         help="redraw while members train")
    with c2:
        label = st.selectbox("Every", list(INTERVALS), index=1, key=state.GROUP_INTERVAL,
                             disabled=not live, help=tables.REFRESH_HELP)
    with c3:
        st.toggle("Log y", key=state.QP_LOG, bind="query-params")
    interval = INTERVALS[label]
else:
    st.toggle("Log y", key=state.QP_LOG, bind="query-params")
    interval = None


@st.fragment(run_every=interval if running and live else None)
def _live() -> None:
    g = data.load_group(root, gid) if running else group
    if g is None:
        return
    _body(g, live=running and live)
    if running and g.state != "running":  # the group just ended: one full redraw
        st.rerun()


_live()

# actions outside the fragment: they switch pages or start processes
# after Stop or Resume the page follows the group until its state shows the change
pending = state.follow("group", group.id,
                       lambda: data.tracking.read_group(group.path, curves=False).state)
a1, a2, a3, a4, a5 = st.columns([1.4, 1.4, 1, 1, 1], vertical_alignment="bottom")
res = None
with a3:
    if st.button("Stop group", key=state.GROUP_STOP, disabled=pending or group.state != "running",
                 help="stop every running member after its current epoch; start no more"):
        res = actions.stop_run(root, group.id)
with a4:
    planned = (group.base_config or {}).get("epochs")
    longer = st.number_input(
        "Epochs in all", min_value=1, step=1, value=None, key=state.GROUP_RESUME_EPOCHS,
        disabled=pending or group.state == "running",
        placeholder=f"as planned ({planned})" if planned else "as planned",
        help="for Resume group: every member trains up to this many epochs in all, the "
             "completed ones too, from their last checkpoint (`resume GROUP --epochs N`); "
             "empty: as planned")
with a5:
    if st.button("Resume group", key=state.GROUP_RESUME,
                 disabled=pending or group.state == "running" or (
                     longer is None and group.state not in (*RESUMABLE_STATES, "partial")),
                 help="in the background: stopped and crashed members go on from their last "
                      "checkpoint, members never started start; with **Epochs in all** set, "
                      "completed members train on too, each up to that many epochs"):
        res = actions.resume(root, group.id, epochs=longer)
if res is not None and res.ok:
    state.expect_change("group", group.id, leaving=group.state,
                        message=res.message or "done")
elif res is not None:
    st.error(res.message or f"the trainer exited with status {res.returncode}")
with a1:
    if group.run_ids and st.button("Compare the members", key=state.GROUP_COMPARE,
                                   disabled=len(group.run_ids) < 2):
        state.go("compare", **{state.QP_RUNS: ",".join(group.run_ids[:20]),
                               state.QP_GROUP: group.id})
best = None
if group.method == "sweep" and group.aggregate is not None and not group.aggregate.ranking.empty:
    top = group.aggregate.ranking.iloc[0]
    if top.get("val_loss_mean") is not None and top.get("val_loss_mean") == \
            top.get("val_loss_mean"):
        best = dict(top["params"] or {})
with a2:
    if best is not None:
        text = setting_words(best)
        if st.button(f"Launch the best setting ({text})", key=state.GROUP_LAUNCH_BEST,
                     type="primary", help="opens Launch with the sweep's base configuration "
                     "and the best setting filled in"):
            cfg = {**dict(group.base_config), **best}
            cfg.pop("threads", None)
            st.session_state[state.LAUNCH_PREFILL] = {
                "config": cfg, "name": f"{group.name or 'sweep'}-best",
                "source": f"the best setting of sweep {group.id}"}
            state.go("launch")
