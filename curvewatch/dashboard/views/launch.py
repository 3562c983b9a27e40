"""Launch page: a form over every trainer option with the CLI's defaults, validated with the
CLI's own rules and messages, that starts a detached run through the trainer's CLI (a
process, not an import) and then opens its Run page."""
import shlex

import streamlit as st

from curvewatch import tracking
from curvewatch.dashboard import actions, data, launch_form, launch_policy, state, tables
from curvewatch.trainer.config import to_args

state.ensure_state()
root = data.runs_dir()
st.title("Launch a run")
st.caption(f"Starts `{actions.SHELL_TRAINER} run --detach` in `{root}`; the whole command is "
           f"under **The same run from a shell**, below the form. A `csv:` dataset must be a "
           f".csv file in {', '.join(f'`{r}`' for r in launch_policy.data_roots())} "
           f"(`{launch_policy.DATA_ROOT_ENV}`); factories must be listed in "
           f"`{launch_policy.ALLOW_FACTORY_ENV}`.")
prefill = st.session_state.get(state.LAUNCH_PREFILL) or {}
if prefill:
    st.info(f"Filled in from {tables.md(prefill.get('source') or 'a run')}: edit and launch "
            f"as **{tables.md(prefill.get('name', ''))}**.")
    # a clone replaces what the form held
    for name, v in launch_form.defaults(prefill.get("config")).items():
        st.session_state[state.launch_key(name)] = v
    st.session_state[state.LAUNCH_NAME] = prefill.get("name", "")
    st.session_state[state.LAUNCH_PREFILL] = None
defaults = launch_form.defaults()
for name, v in defaults.items():
    st.session_state.setdefault(state.launch_key(name), v)
st.session_state.setdefault(state.LAUNCH_NAME, "")

with st.form(state.LAUNCH_FORM):
    run_name = st.text_input("Run name", key=state.LAUNCH_NAME,
                             placeholder="default: DATASET-MODEL")
    tags = st.text_input("Tags (comma-separated)", key="launch-tags")
    values = {}
    for section, names in launch_form.sections().items():
        st.markdown(f"**{section}**")
        cols = st.columns(4)
        for i, name in enumerate(names):
            key = state.launch_key(name)
            label = name.replace("_", " ")
            helptext = launch_form.help_text(name)
            with cols[i % 4]:
                ch = launch_form.choices(name)
                sugg = launch_form.suggestions(name)
                if name == "early_stop":
                    values[name] = st.multiselect(label, list(launch_form.tc.EARLY_STOP_KINDS),
                                                  key=key, help=helptext)
                elif ch:
                    values[name] = st.selectbox(label, list(ch), key=key, help=helptext)
                elif sugg:
                    cur = st.session_state.get(key)
                    opts = list(sugg) + ([cur] if cur and cur not in sugg else [])
                    values[name] = st.selectbox(label, opts, key=key, help=helptext,
                                                accept_new_options=True)
                else:
                    values[name] = st.text_input(label, key=key, help=helptext,
                                                 placeholder="default" if not defaults.get(name)
                                                 else None)
    st.markdown("**Run groups**")
    g1, g2, _, _ = st.columns(4)
    with g1:
        repeat = st.text_input("repeat", value="1", key=state.LAUNCH_REPEAT,
                               help="train with N seeds (seed, seed+1, ...) as a group")
    with g2:
        parallel = st.text_input("parallel", value="1", key=state.LAUNCH_PARALLEL,
                                 help="members of a group training at once on this machine")
    submitted = st.form_submit_button("Launch", type="primary", key=state.LAUNCH_SUBMIT)
    # the spinner and the answer show here, by the button the user just pressed (below the
    # form they would be out of sight)
    feedback = st.empty()

group_opts = {k: v.strip() for k, v in (("repeat", repeat), ("parallel", parallel))
              if v.strip() not in ("", "1")}
tag_list = [t.strip() for t in tags.split(",") if t.strip()]
if submitted:
    cfg, problem = launch_form.validate(values)
    name_problem = None
    if run_name.strip():
        try:
            tracking.paths.check_name(run_name)
        except ValueError as e:
            name_problem = str(e)
    refusal = None
    if not (problem or name_problem):
        try:  # what the form may ask of this machine: data folders, factories, cores
            opts = launch_policy.apply(launch_form.to_raw(values), group_opts)
        except launch_policy.Refused as e:
            refusal = str(e)
    if problem or name_problem or refusal:
        feedback.error(f"{actions.SHELL_TRAINER} run: error: "
                       f"{problem or name_problem or refusal}")
    else:
        with feedback, st.spinner("Starting the run… (loading the data and building the model "
                                  "first, a few seconds)"):
            res = actions.launch_run(root, run_name.strip(), opts, tag_list,
                                     group_options=group_opts)
        if res.ok and res.run_id:
            st.session_state[state.LAUNCH_RESULT] = res.run_id
            feedback.success(f"Started {res.run_id}")
            if data.is_group(root, res.run_id):  # --repeat / --validation kfold: a group
                state.go("group", **{state.QP_GROUP: res.run_id})
            state.go("run", **{state.QP_RUN: res.run_id})
        else:
            feedback.error(res.message or f"the trainer exited with status {res.returncode}")

with st.expander("The same run from a shell"):
    shown, _ = launch_form.validate(values)  # the flags launch_run passes: to_args
    st.code(shlex.join([*shlex.split(actions.SHELL_TRAINER), *actions.launch_args(
        root, run_name.strip(), to_args(shown) if shown is not None else (), tag_list,
        group_opts)]), language="bash")
