"""Runs page: every run with its state, progress, key hyperparameters, best val loss and
current flags; filter, sort, select to open or compare; run groups as one expandable row
each. Reads run.json + status.json only (the trainer writes its flags and best val accuracy
there); only runs without `flags` in status.json (a user's own loop) have their metrics read,
once per file state, for the rows on the visible page, a large one in a worker thread while
its row says "diagnosing…" (data.run_summary)."""
import hashlib

import streamlit as st

from curvewatch.dashboard import actions, data, state, tables

PAGE_SIZE = 50
GROUP_ROWS = 30
#: The columns a user scans, in order, fitting a 1,400-px window beside the sidebar (the
#: browser test measures it); the frame's others (epoch, eta, best val acc, dataset, model,
#: batch size, weight decay, dropout, tags, group, created, problem, id) are left out.
RUNS_COLUMNS = ["open", "state", "progress", "flags", "best val loss", "best epoch", "lr",
                "optimizer", "hidden"]
#: whole percent, in one neutral colour for every state (a finished run's bar is not red)
PROGRESS = st.column_config.ProgressColumn("progress", min_value=0, max_value=100, format="%d%%",
                                           color="blue", width=88)
RUNS_COLUMN_CONFIG = {
    # the run's name is its link (/run?run=ID#NAME, the name shown from after the '#')
    "open": st.column_config.LinkColumn("run", display_text=r"#(.*)$", width=165,
                                        help="open the run's page"),
    "state": st.column_config.TextColumn("state", width=110),
    "progress": PROGRESS,
    "flags": st.column_config.TextColumn("flags", width=170, help=tables.FLAGS_HELP),
    "best val loss": st.column_config.NumberColumn("best val loss", format="%.4f", width=88),
    "best epoch": st.column_config.NumberColumn("best epoch", width=70),
    "lr": st.column_config.TextColumn("lr", width=60),
    "optimizer": st.column_config.TextColumn("optimizer", width=72),
    "hidden": st.column_config.TextColumn("hidden", width=70),
    "best val acc": st.column_config.NumberColumn(
        "best val acc", format="%.3f", help="best validation accuracy (R² for regression)"),
    "created": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
    "severity": None,  # drives the flags cell's colour only
}

state.ensure_state()
root = data.runs_dir()
st.title("Runs")
st.caption(f"Runs directory: `{root.resolve()}`")

runs = data.list_runs(root)
if not runs:
    st.info("No runs yet in this runs directory. Start the three demo runs (one healthy, one "
            "that overfits, one that plateaus) with the button, or from a shell; runs you "
            "logged with TensorBoard can be imported:")
    cli = actions.SHELL_TRAINER
    st.code(f"{cli} demo --runs-dir {root}\n"
            f"{cli} run --runs-dir {root} --detach --dataset digits --epochs 30\n"
            f"{cli} import path/to/tensorboard/logdir --runs-dir {root}",
            language="bash")
    if st.button("Start the demo runs", key=state.RUNS_DEMO, type="primary"):
        with st.spinner("Starting the demo runs…"):
            res = actions.start_demo(root)
        if res.ok:
            st.success(res.stdout.strip() or "started")
            st.rerun()
        else:
            st.error(f"The demo did not start: {res.message}")
    st.stop()

by_id = {r.id: r for r in runs}
RUNS_REFRESH_SECONDS = 5
#: how often a page with a summary being made checks whether it is done
PENDING_POLL_SECONDS = 1
DIAGNOSING = "diagnosing…"


def _signature(rs) -> tuple:
    return tuple((r.id, r.state, r.epoch) for r in rs)


if any(r.state == "running" for r in runs):
    live = st.toggle("Auto-refresh while runs train", value=True, key=state.RUNS_LIVE,
                     help=f"checks every {RUNS_REFRESH_SECONDS} s and redraws the table when "
                     "a run finished an epoch or changed state")
    st.session_state["_runs_signature"] = _signature(runs)

    @st.fragment(run_every=RUNS_REFRESH_SECONDS if live else None)
    def _watch() -> None:
        """Cheap poll (run.json/status.json, cached by mtime): a full rerun only on change."""
        if _signature(data.list_runs(root)) != st.session_state.get("_runs_signature"):
            st.rerun()

    _watch()

all_states = sorted({r.state for r in runs})
all_tags = sorted({t for r in runs for t in r.tags})

c1, c2, c3, c4 = st.columns([2, 2, 2, 1.2])
with c1:
    states = st.multiselect("State", all_states, key=state.RUNS_STATE,
                            format_func=tables.state_label)
with c2:
    text = st.text_input("Search", key=state.RUNS_TEXT, placeholder="name, tag, note, or lr=0.01",
                         help="every word must match: key=value matches a config value "
                         "(lr=0.01 also finds 1e-2), other words the name, id, group, tags, "
                         "notes or any config key=value")
with c3:
    tags = st.multiselect("Tags", all_tags, key=state.RUNS_TAGS) if all_tags else []
with c4:
    sort = st.selectbox("Sort", list(tables.SORTS), key=state.RUNS_SORT)

shown = tables.sort_runs(tables.filter_runs(runs, states=states, text=text, tags=tags), sort)
n_pages = max(1, -(-len(shown) // PAGE_SIZE))
page_no = 1
if n_pages > 1:
    page_no = st.number_input(f"Page (of {n_pages}, {PAGE_SIZE} runs each)", 1, n_pages, 1,
                              key=state.RUNS_PAGE)
visible = shown[(page_no - 1) * PAGE_SIZE: page_no * PAGE_SIZE]
summaries = {r.id: data.run_summary(r, wait=False) for r in visible}
frame = tables.runs_frame(visible, {k: v["flags"] for k, v in summaries.items()},
                          best_acc={k: v["best_val_acc"] for k, v in summaries.items()})
pending = [r for r in visible if summaries[r.id] is data.PENDING]
if pending:  # a large run's history is diagnosed in a worker: its row says so until done
    frame.loc[frame["id"].isin([r.id for r in pending]), ["flags", "severity"]] = [
        DIAGNOSING, None]

    @st.fragment(run_every=PENDING_POLL_SECONDS)
    def _wait_for_summaries() -> None:
        """The whole page again once a pending summary is made (its file state is re-read)."""
        if any(data.run_summary(r, wait=False) is not data.PENDING for r in pending):
            st.rerun()

    _wait_for_summaries()
frame.insert(1, "open", [f"/run?run={rid}#{name}" for rid, name in zip(frame["id"],
                                                                        frame["name"],
                                                                        strict=True)])

counts = {s: sum(1 for r in runs if r.state == s) for s in all_states}
# selection: ticked in the table itself and kept in the URL (?runs=a,b), so a selection can be
# shared and survives a filter or another page of the table (runs ticked elsewhere are kept)
wanted = [rid for rid in state.qp_list(state.QP_RUNS) if rid in by_id]
on_screen = list(frame["id"])
b1, b2, b3 = st.columns([1, 1, 5], vertical_alignment="center")
event = st.dataframe(
    tables.styled_runs(frame), hide_index=True, placeholder=tables.MISSING,
    # a new table when the rows change: its selection starts again from the URL's
    key=f"runs-table-{hashlib.sha1(' '.join(on_screen).encode()).hexdigest()[:10]}",
    on_select="rerun", selection_mode="multi-row",
    selection_default={"selection": {"rows": [i for i, rid in enumerate(on_screen)
                                              if rid in wanted]}},
    height=min(38 + 35 * len(frame), 720), column_order=RUNS_COLUMNS,
    column_config=RUNS_COLUMN_CONFIG)
picked = [on_screen[i] for i in event.selection.rows if i < len(on_screen)]
selected = ([rid for rid in wanted if rid not in on_screen or rid in picked]
            + [rid for rid in picked if rid not in wanted])  # in the URL's order, new ones last
if selected:
    st.query_params[state.QP_RUNS] = ",".join(selected)
elif state.QP_RUNS in st.query_params:
    del st.query_params[state.QP_RUNS]
with b1:
    if st.button("Open run", key=state.RUNS_OPEN, disabled=len(selected) != 1,
                 icon=":material/monitoring:", help="tick exactly one run in the table"):
        state.go("run", **{state.QP_RUN: selected[0]})
with b2:
    if st.button("Compare", key=state.RUNS_COMPARE, disabled=not 2 <= len(selected) <= 20,
                 icon=":material/stacked_line_chart:", help="tick 2 to 20 runs in the table"):
        state.go("compare", **{state.QP_RUNS: ",".join(selected)})
with b3:
    st.caption(f"{len(selected)} selected · {len(shown)} of {len(runs)} runs shown · " +
               " · ".join(f"{tables.state_label(s)}: {n}" for s, n in counts.items()))

for r in visible:
    if r.state == "unreadable":
        st.warning(f"Run folder {tables.md(r.id)} is unreadable: {tables.md(r.problem)}")

groups = data.list_groups(root)
if groups:
    st.subheader("Groups")
    st.caption("k-fold and bootstrap validation, repeated seeds and sweeps, one row each: "
               "expand for the members, open for the mean ± sd curves, the score and a "
               "sweep's ranking. Read from group.json and the members' status.json only.")
    for g in groups[:GROUP_ROWS]:
        row = tables.group_row(g, by_id)
        label = (f"**{tables.md(row['name'])}** · {tables.md(row['method'])}"
                 + (f" ({tables.md(row['validation'])})" if row["validation"] else "")
                 + f" · {row['state']} · {row['members']} · {row['progress']:.0%} done"
                 + (f" · {tables.md(row['score'])}" if row["score"] else ""))
        with st.expander(label, expanded=False, icon=":material/stacks:"):
            st.markdown(f"[Open the group page ↗](/group?group={g.id}) · {tables.md(g.id)}"
                        + (f" · score over {row['n']} member(s)"
                           + (" so far" if g.state == "running" else "")
                           if row["score"] else ""))
            if g.problem:
                st.warning(f"Group {tables.md(g.id)}: {tables.md(g.problem)}")
            st.dataframe(tables.group_members_frame(g, by_id), hide_index=True,
                         key=f"runs-group-{g.id}", column_config={
                             "open": st.column_config.LinkColumn(
                                 "open", display_text="open ↗", width="small"),
                             "progress": PROGRESS,
                             "best val loss": st.column_config.NumberColumn(format="%.4f")})
    if len(groups) > GROUP_ROWS:
        st.caption(f"{GROUP_ROWS} newest of {len(groups)} groups shown; the Group page lists "
                   "them all.")
