"""Pure plotly figure builders: DataFrames and findings in, `go.Figure` out.

No streamlit here. Each builder fixes the template, the colours and `uirevision` (so a live
redraw keeps the user's zoom), and raises a px-style ValueError naming the columns that exist
when asked for one that does not. Flags are layout shapes (`add_vrect` / `add_vline` with
annotation text) plus one "flags" marker trace that carries their hover text.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from curvewatch.diagnosis import SPAN_KINDS as DIAGNOSIS_SPAN_KINDS
from curvewatch.diagnosis.history import NAMES
from curvewatch.tracking.aggregate import curve_stats

from .downsample import SCREEN_POINTS, downsample
from .series import smooth_ema

TEMPLATE = "plotly_white"
#: Above this many drawn points (after downsampling) a trace is drawn with WebGL (Scattergl):
#: below it SVG draws faster in a browser without a GPU, and a page gets only ~16 WebGL
#: contexts (README, Performance: bench/dashboard_browser.py).
WEBGL_POINTS = 5_000
#: Above this many points a trace is also downsampled to screen resolution, keeping each
#: bucket's extremes (dashboard.downsample).
MAX_POINTS = SCREEN_POINTS
TRAIN_COLOR = "#1f77b4"
VAL_COLOR = "#ff7f0e"
TEST_COLOR = "#2ca02c"
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#ad494a", "#637939", "#8c6d31",
           "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354", "#756bb1")
SEVERITY_COLORS = {"info": "#1f77b4", "warning": "#ff9f1c", "critical": "#d62728"}
#: Span colours by kind; a span kind without one is drawn in SPAN_GREY.
_SPAN_COLORS = {"overfitting": "rgba(214,39,40,0.12)", "plateau": "rgba(127,127,127,0.15)",
                "possible_overfitting": "rgba(214,39,40,0.05)",
                "converged": "rgba(44,160,44,0.10)",
                "unstable": "rgba(255,159,28,0.12)", "underfitting": "rgba(148,103,189,0.10)",
                "exploding_gradients": "rgba(214,39,40,0.10)",
                "vanishing_gradients": "rgba(23,190,207,0.12)"}
SPAN_GREY = "rgba(127,127,127,0.10)"
#: Finding kinds drawn as a shaded span (from start to end, or to the last epoch if ongoing):
#: the detector registry says which (diagnosis.SPAN_KINDS), this module only colours them.
SPAN_KINDS = {k: _SPAN_COLORS.get(k, SPAN_GREY) for k in DIAGNOSIS_SPAN_KINDS}
#: Findings drawn on the learning curves; the gradient chart draws GRADIENT_KINDS.
CURVE_KINDS = ("divergence", "unstable", "overfitting", "possible_overfitting", "overconfidence",
               "underfitting", "plateau", "converged")
GRADIENT_KINDS = ("divergence", "exploding_gradients", "vanishing_gradients")
X_AXES = {"epoch": "epoch", "step": "step", "time": "wall time (s)"}


def _require(frame: pd.DataFrame, *cols: str) -> None:
    for c in cols:
        if c not in frame.columns:
            raise ValueError(f"Value of {c!r} is not the name of a column in 'data_frame'. "
                             f"Expected one of {list(frame.columns)} but received: {c}")


def run_colors(run_ids: Sequence[str]) -> dict[str, str]:
    """One colour per run, by its position in the selection: the same on every chart."""
    return {rid: PALETTE[i % len(PALETTE)] for i, rid in enumerate(run_ids)}


def metric_names(history: pd.DataFrame) -> list[str]:
    """The paired metrics a history holds, e.g. ['loss', 'acc'] or ['loss', 'r2']."""
    out = []
    for col in history.columns:
        for prefix in ("train_", "val_", "test_"):
            if col.startswith(prefix):
                name = col[len(prefix):]
                if name not in out:
                    out.append(name)
    order = {"loss": 0, "acc": 1, "r2": 1}
    return sorted(out, key=lambda m: (order.get(m, 2), m))


def with_steps(history: pd.DataFrame, steps_per_epoch: Any = None) -> pd.DataFrame:
    """The history with a `step` column: its own step counts, or, for a run that logged none
    but whose iterations per epoch are known (run.json data `steps_per_epoch`), epoch times
    that; unchanged (no step axis) otherwise. Never mutates `history`."""
    has = "step" in history.columns and bool(
        np.isfinite(pd.to_numeric(history["step"], errors="coerce").to_numpy(float)).any())
    spe = steps_per_epoch
    if has or isinstance(spe, bool) or not isinstance(spe, int) or spe < 1 \
            or "epoch" not in history.columns:
        return history
    return history.assign(step=pd.to_numeric(history["epoch"], errors="coerce") * spe)


def has_axis(history: pd.DataFrame, x: str) -> bool:
    """Whether the history can be drawn against `x`: epoch always; step and time only when
    the run logged them (a run without step counts has no step axis, see with_steps)."""
    if x == "epoch":
        return "epoch" in history.columns
    if x not in X_AXES or x not in history.columns:
        return False
    return bool(np.isfinite(pd.to_numeric(history[x], errors="coerce").to_numpy(float)).any())


def axes_of(history: pd.DataFrame) -> list[str]:
    """The x axes (X_AXES keys) this history can be drawn on."""
    return [a for a in X_AXES if has_axis(history, a)]


def x_values(history: pd.DataFrame, x: str = "epoch") -> np.ndarray:
    """The x column for an axis choice: epoch, step, or wall time in seconds since the first
    record. ValueError for an axis the history lacks (has_axis): epochs drawn as steps would
    be a wrong comparison."""
    if x != "epoch" and not has_axis(history, x):
        raise ValueError(f"this run has no {x} axis (it logged no {x} values; its columns: "
                         f"{list(history.columns)}); draw it by {', '.join(axes_of(history))}")
    if x == "time":
        t = pd.to_numeric(history["time"], errors="coerce").to_numpy(dtype=float)
        return t - t[np.isfinite(t)].min()
    return pd.to_numeric(history[x], errors="coerce").to_numpy(dtype=float)


def line_trace(x: Sequence[float], y: Sequence[float], *, name: str, color: str,
               width: float = 2.0, opacity: float = 1.0, showlegend: bool = True,
               legendgroup: str | None = None, dash: str | None = None,
               hovertemplate: str | None = None, max_points: int = MAX_POINTS) -> go.Scatter:
    """A line trace that stays fast: extreme-keeping downsampling above max_points, and
    Scattergl where more than WEBGL_POINTS points remain to draw (SVG otherwise)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if len(y) > max_points:
        x, y = downsample(x, y, max_points)
    cls = go.Scattergl if len(y) > WEBGL_POINTS else go.Scatter
    # plotly shows NaN as a gap; +/-inf would be dropped silently, so draw them as gaps too
    y = np.where(np.isfinite(y), y, np.nan)
    return cls(x=x, y=y, mode="lines", name=name, opacity=opacity, showlegend=showlegend,
               legendgroup=legendgroup or name,
               line=dict(color=color, width=width, dash=dash),
               hovertemplate=hovertemplate or f"{name}: %{{y:.4g}}<extra></extra>")


def _finding_get(f: Any, key: str, default: Any = None) -> Any:
    if isinstance(f, Mapping):
        return f.get(key, default)
    return getattr(f, key, default)


def plain(text: Any) -> str:
    """`text` (a run name, a metric) as plotly shows it literally: plotly reads <a href>, <b>
    and the like in names and titles as markup, and decodes &lt; back to '<' when it draws."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _layout(fig: go.Figure, *, title: str, xtitle: str, ytitle: str, uirevision: str,
            log_y: bool = False, height: int = 360) -> go.Figure:
    # every figure leaves through here: its names and titles become plain text once
    for trace in fig.data:
        if trace.name is not None:
            trace.name = plain(trace.name)
    title, xtitle, ytitle = plain(title), plain(xtitle), plain(ytitle)
    fig.update_layout(template=TEMPLATE, title=dict(text=title, x=0.01), height=height,
                      margin=dict(l=50, r=20, t=50, b=40), uirevision=uirevision,
                      hovermode="x unified",
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, x=1,
                                  xanchor="right"))
    fig.update_xaxes(title_text=xtitle)
    # "power": 1e-4 reads 10⁻⁴, not plotly's SI "100μ" (a learning rate is no micro-unit)
    fig.update_yaxes(title_text=ytitle, type="log" if log_y else "linear",
                     exponentformat="power")
    return fig


def learning_curve_figure(history: pd.DataFrame, findings: Iterable[Any] = (), *,
                          metric: str = "loss", smoothing: float = 0.0, x: str = "epoch",
                          show_raw: bool = True, best_epoch: int | None = None,
                          stop_epoch: int | None = None, log_y: bool = False,
                          uirevision: str | None = None, title: str | None = None
                          ) -> go.Figure:
    """Train vs val (and test, if logged) of one metric, with the findings drawn on it.

    Smoothing is TensorBoard's debiased EMA, for display only; with show_raw the raw line is
    drawn faint behind the smoothed one. Flags: a shaded span for overfitting (from its start,
    the best epoch) and plateau and other episodes, a vertical line at the best epoch, at an
    early stop and at divergence, and one "flags" marker trace with the hover details.
    Flags are found by epoch and placed where that epoch lies on the chosen x axis.
    """
    cols = [c for c in (f"train_{metric}", f"val_{metric}", f"test_{metric}")
            if c in history.columns]
    if not cols:
        _require(history, f"val_{metric}")
    _require(history, "epoch")
    xs = x_values(history, x)
    fig = go.Figure()
    colors = {"train": TRAIN_COLOR, "val": VAL_COLOR, "test": TEST_COLOR}
    for col in cols:
        split = col.split("_", 1)[0]
        y = pd.to_numeric(history[col], errors="coerce").to_numpy(dtype=float)
        if smoothing and smoothing > 0:
            if show_raw:
                fig.add_trace(line_trace(xs, y, name=f"{split} (raw)", color=colors[split],
                                         width=1, opacity=0.3, showlegend=False,
                                         legendgroup=split))
            fig.add_trace(line_trace(xs, smooth_ema(y, smoothing), name=split,
                                     color=colors[split], legendgroup=split))
        else:
            fig.add_trace(line_trace(xs, y, name=split, color=colors[split]))
    add_flags(fig, history, [f for f in findings or () if _finding_get(f, "kind") in CURVE_KINDS],
              metric=metric, best_epoch=best_epoch, stop_epoch=stop_epoch, x=x)
    return _layout(fig, title=title or column_title(metric), xtitle=X_AXES.get(x, x),
                   ytitle=metric, log_y=log_y, uirevision=uirevision or f"curve-{metric}")


#: The human names of what the trainer logs, for chart titles, beyond the diagnosis's own
#: names (diagnosis.history.NAMES, which its messages use): a metric of a train/val/test
#: pair, the split it was measured on, and the other columns.
METRIC_WORDS = {"loss": "loss", "acc": "accuracy", "r2": "R²"}
SPLIT_WORDS = {"train": "training", "val": "validation", "test": "test"}
COLUMN_WORDS = {"lr": "learning rate"}


def column_title(column: str) -> str:
    """A chart title for a metric or history column: "val_acc" -> "Validation accuracy",
    "loss" -> "Loss", "lr" -> "Learning rate"; a name the trainer does not log stays as it is."""
    if column in NAMES:
        return NAMES[column]
    split, _, metric = column.partition("_")
    if split in SPLIT_WORDS and metric in METRIC_WORDS:
        words = f"{SPLIT_WORDS[split]} {METRIC_WORDS[metric]}"
    else:
        words = METRIC_WORDS.get(column) or COLUMN_WORDS.get(column) or ""
    return words[:1].upper() + words[1:] if words else column


def epoch_to_x(history: pd.DataFrame, x: str = "epoch") -> Callable[[float], float]:
    """Where an epoch lies on the x axis `x` (epoch, step or time): that epoch's own x value,
    interpolated between logged epochs for one that is not in the history."""
    ep = pd.to_numeric(history["epoch"], errors="coerce").to_numpy(dtype=float)
    xs = x_values(history, x)
    ok = np.isfinite(ep) & np.isfinite(xs)
    if x == "epoch" or not ok.any():
        return float
    order = np.argsort(ep[ok], kind="stable")
    ep_sorted, xs_sorted = ep[ok][order], xs[ok][order]
    return lambda epoch: float(np.interp(epoch, ep_sorted, xs_sorted))


def add_flags(fig: go.Figure, history: pd.DataFrame, findings: Iterable[Any], *,
              metric: str = "loss", best_epoch: int | None = None,
              stop_epoch: int | None = None, x: str = "epoch") -> go.Figure:
    """Draw findings and markers on a figure whose x axis is `x` (mutates and returns
    `fig`); spans and lines sit where their epochs lie on that axis."""
    epochs = pd.to_numeric(history["epoch"], errors="coerce")
    last = int(epochs.max()) if len(epochs) and np.isfinite(epochs.max()) else 0
    at = epoch_to_x(history, x)
    val_col = f"val_{metric}" if f"val_{metric}" in history.columns else None
    mx, my, mtext, mcolor = [], [], [], []
    n_labels = 0  # stagger the annotations so flags that start together stay readable

    def y_at(epoch: int) -> float:
        if val_col is None:
            return math.nan
        row = history.loc[epochs == epoch, val_col]
        v = float(row.iloc[0]) if len(row) else math.nan
        return v if math.isfinite(v) else math.nan

    for f in findings or ():
        kind = _finding_get(f, "kind")
        start = _finding_get(f, "start_epoch")
        end = _finding_get(f, "end_epoch")
        sev = _finding_get(f, "severity", "info")
        msg = _finding_get(f, "message", "")
        if kind in ("still_improving",) or start is None:
            continue
        end_x = end if end is not None else last
        label = kind.replace("_", " ")
        if kind == "divergence":
            fig.add_vline(x=at(start), line=dict(color=SEVERITY_COLORS["critical"], width=2,
                                             dash="dot"),
                          annotation=dict(text="divergence", yshift=-16 * n_labels),
                          annotation_position="top left", name="flag-divergence")
            n_labels += 1
        elif kind in SPAN_KINDS:
            fig.add_vrect(x0=at(start), x1=at(max(end_x, start)), fillcolor=SPAN_KINDS[kind],
                          line_width=0, layer="below",
                          annotation=dict(text=label + ("" if end is not None else " →"),
                                          yshift=-16 * n_labels),
                          annotation_position="top left", name=f"flag-{kind}")
            n_labels += 1
        mx.append(at(start))
        my.append(y_at(start))
        mtext.append(f"<b>{label}</b> ({sev}), epoch {start}"
                     f"{'' if end is None else f'–{end}'}<br>{_wrap(msg)}")
        mcolor.append(SEVERITY_COLORS.get(sev, "#555"))
    if best_epoch:
        fig.add_vline(x=at(best_epoch), line=dict(color="#2ca02c", width=1.5, dash="dash"),
                      annotation_text=f"best @ {best_epoch}", annotation_position="bottom right",
                      name="flag-best")
        mx.append(at(best_epoch))
        my.append(y_at(best_epoch))
        mtext.append(f"<b>best epoch</b> {best_epoch}")
        mcolor.append("#2ca02c")
    if stop_epoch:
        fig.add_vline(x=at(stop_epoch), line=dict(color="#d62728", width=2),
                      annotation_text=f"early stop @ {stop_epoch}",
                      annotation_position="bottom left", name="flag-stop")
        mx.append(at(stop_epoch))
        my.append(y_at(stop_epoch))
        mtext.append(f"<b>early stop</b> at epoch {stop_epoch}")
        mcolor.append("#d62728")
    if mx:
        fig.add_trace(go.Scatter(x=mx, y=my, mode="markers", name="flags",
                                 marker=dict(symbol="diamond", size=11, color=mcolor,
                                             line=dict(color="white", width=1)),
                                 text=mtext, hovertemplate="%{text}<extra></extra>"))
    return fig


def _wrap(text: str, width: int = 70) -> str:
    words, lines, cur = str(text).split(), [], ""
    for w in words:
        if len(cur) + len(w) + 1 > width and cur:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}".strip()
    if cur:
        lines.append(cur)
    return "<br>".join(lines)


def grad_norm_figure(history: pd.DataFrame, findings: Iterable[Any] = (), *,
                     x: str = "epoch", uirevision: str | None = None) -> go.Figure:
    """Global gradient norm, mean and max over each epoch, on a log axis."""
    _require(history, "grad_norm")
    xs = x_values(history, x)
    fig = go.Figure()
    fig.add_trace(line_trace(xs, _positive(history["grad_norm"]), name="mean",
                             color="#9467bd"))
    if "grad_norm_max" in history.columns:
        fig.add_trace(line_trace(xs, _positive(history["grad_norm_max"]), name="max",
                                 color="#9467bd", width=1, dash="dot"))
    add_flags(fig, history,
              [f for f in findings or () if _finding_get(f, "kind") in GRADIENT_KINDS],
              metric="__none__", x=x)
    return _layout(fig, title=column_title("grad_norm"), xtitle=X_AXES.get(x, x),
                   ytitle="L2 norm", log_y=True, uirevision=uirevision or "grad-norm")


def _positive(col: pd.Series) -> np.ndarray:
    v = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
    return np.where(v > 0, v, np.nan)


def lr_figure(history: pd.DataFrame, *, x: str = "epoch",
              uirevision: str | None = None) -> go.Figure:
    """The learning rate per epoch, on a log axis when every value is positive (schedules
    span decades, and a constant rate then sits mid-chart instead of on an axis limit)."""
    _require(history, "lr")
    lr = pd.to_numeric(history["lr"], errors="coerce").to_numpy(dtype=float)
    finite = lr[np.isfinite(lr)]
    log_y = bool(finite.size) and bool((finite > 0).all())
    fig = go.Figure(line_trace(x_values(history, x), lr, name="lr",
                               color="#17becf", hovertemplate="lr: %{y:.3g}<extra></extra>"))
    fig = _layout(fig, title=column_title("lr"), xtitle=X_AXES.get(x, x), ytitle="lr",
                  uirevision=uirevision or "lr", height=280, log_y=log_y)
    fig.update_yaxes(exponentformat="power")
    fig.update_layout(showlegend=False)
    return fig


#: History columns that are axes or bookkeeping, never a scalar to plot.
NOT_SCALARS = ("epoch", "step", "time", "absent")
#: Scalars the Run page draws in charts of their own (gradient norm and learning rate).
OWN_CHART = ("grad_norm", "grad_norm_max", "lr")


def scalar_sections(history: pd.DataFrame) -> dict[str, list[str]]:
    """The numeric columns no learning-curve, gradient or lr chart draws, by section as
    TensorBoard groups tags: the part before the first '/' (or, for names like
    `custom_temperature` that an import joined with '_', before the first '_' when another
    such column shares it); a name that shares no prefix goes to 'other'."""
    paired = {f"{s}_{m}" for m in metric_names(history) for s in ("train", "val", "test")}
    cols = [c for c in history.columns
            if c not in (*NOT_SCALARS, *OWN_CHART) and c not in paired
            and pd.api.types.is_numeric_dtype(history[c])]
    heads = [c.split("/", 1)[0] if "/" in c else c.split("_", 1)[0] for c in cols]
    sections: dict[str, list[str]] = {}
    for col, head in zip(cols, heads, strict=True):
        shared = "/" in col or ("_" in col and heads.count(head) > 1)
        sections.setdefault(head if shared else "other", []).append(col)
    return dict(sorted(sections.items(), key=lambda kv: (kv[0] == "other", kv[0])))


def scalar_figure(history: pd.DataFrame, column: str, *, smoothing: float = 0.0,
                  x: str = "epoch", log_y: bool = False, color: str = PALETTE[4],
                  uirevision: str | None = None) -> go.Figure:
    """One logged scalar of one run (a small chart of a Run-page section)."""
    fig = compare_figure({column: history}, column, labels={column: column},
                         colors={column: color}, smoothing=smoothing, x=x, log_y=log_y,
                         uirevision=uirevision or f"scalar-{column}")
    fig.update_layout(height=280, showlegend=False)
    return fig


#: What a cell of layer_heatmap_figure is (docs/run-format.md, layers.jsonl), for its caption.
LAYER_HEATMAP_CAPTION = (
    "A cell is one parameter tensor (a row, named as PyTorch names it: `1.weight` is the "
    "weight of the model's module 1) in one epoch (a column), coloured by log10 of that "
    "tensor's gradient L2 norm over the epoch's steps (the root mean square of the per-step "
    "norms, before clipping): −2 is 0.01, each step of 1 a factor of 10. Hover a cell for "
    "its value.")


def layer_heatmap_figure(layers: pd.DataFrame, *, uirevision: str | None = None
                         ) -> go.Figure:
    """Per-layer gradient norm: epoch × parameter tensor, colour on a log10 scale."""
    _require(layers, "epoch")
    names = [c for c in layers.columns if c != "epoch"]
    z = layers[names].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float).T
    with np.errstate(divide="ignore", invalid="ignore"):
        logz = np.where(z > 0, np.log10(z), np.nan)
    fig = go.Figure(go.Heatmap(
        x=layers["epoch"].to_numpy(), y=names, z=logz, customdata=z, colorscale="Viridis",
        colorbar=dict(title="log10 ‖g‖"),
        hovertemplate="epoch %{x}<br>%{y}<br>‖g‖ = %{customdata:.3g}<extra></extra>"))
    fig = _layout(fig, title="Per-layer gradient norm", xtitle="epoch", ytitle="",
                  uirevision=uirevision or "layers",
                  height=max(260, 60 + 22 * len(names)))
    fig.update_layout(hovermode="closest")
    # names like "1.weight" would be read as numbers by plotly's axis autotype
    fig.update_yaxes(type="category", autorange="reversed")
    return fig


# ----------------------------------------------------------------------------- compare

def compare_figure(histories: Mapping[str, pd.DataFrame], column: str, *,
                   labels: Mapping[str, str] | None = None,
                   colors: Mapping[str, str] | None = None, smoothing: float = 0.0,
                   x: str = "epoch", log_y: bool = False, show_raw: bool = True,
                   uirevision: str | None = None) -> go.Figure:
    """One line per run of the same column (e.g. val_loss), runs coloured consistently."""
    ids = list(histories)
    colors = colors or run_colors(ids)
    labels = labels or {i: i for i in ids}
    fig = go.Figure()
    for rid in ids:
        h = histories[rid]
        if column not in h.columns:
            continue
        xs = x_values(h, x)
        y = pd.to_numeric(h[column], errors="coerce").to_numpy(dtype=float)
        name = labels.get(rid, rid)
        if smoothing and smoothing > 0:
            if show_raw:
                fig.add_trace(line_trace(xs, y, name=f"{name} (raw)", color=colors[rid],
                                         width=1, opacity=0.25, showlegend=False,
                                         legendgroup=rid))
            y = smooth_ema(y, smoothing)
        fig.add_trace(line_trace(xs, y, name=name, color=colors[rid], legendgroup=rid,
                                 hovertemplate=f"{plain(name)}: %{{y:.4g}}<extra></extra>"))
    if not fig.data:
        any_cols = sorted({c for h in histories.values() for c in h.columns})
        raise ValueError(f"Value of {column!r} is not the name of a column in any run. "
                         f"Expected one of {any_cols} but received: {column}")
    return _layout(fig, title=column_title(column), xtitle=X_AXES.get(x, x), ytitle=column,
                   log_y=log_y, uirevision=uirevision or f"compare-{column}", height=420)


def small_multiples_figure(histories: Mapping[str, pd.DataFrame], metric: str = "loss", *,
                           labels: Mapping[str, str] | None = None,
                           colors: Mapping[str, str] | None = None, smoothing: float = 0.0,
                           x: str = "epoch", log_y: bool = False, cols: int = 3,
                           uirevision: str | None = None) -> go.Figure:
    """One panel per run, shared axes. `metric` is a train_/val_ pair's name ("loss" draws
    train_loss dotted and val_loss solid) or, when no run has such a pair, a column drawn as
    it is (e.g. "custom_temperature" or "lr")."""
    ids = list(histories)
    paired = any(f"{split}_{metric}" in h.columns for h in histories.values()
                 for split in ("train", "val"))
    series = ((("train", "dot"), ("val", None)) if paired else ((None, None),))
    colors = colors or run_colors(ids)
    labels = labels or {i: i for i in ids}
    n = max(1, len(ids))
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    fig = make_subplots(rows=rows, cols=cols, shared_xaxes="all", shared_yaxes="all",
                        subplot_titles=[plain(labels.get(i, i)) for i in ids],
                        horizontal_spacing=0.04, vertical_spacing=0.12 if rows > 1 else 0.1)
    for k, rid in enumerate(ids):
        h = histories[rid]
        r, c = k // cols + 1, k % cols + 1
        xs = x_values(h, x)
        for split, dash in series:
            col = f"{split}_{metric}" if split else metric
            if col not in h.columns:
                continue
            y = pd.to_numeric(h[col], errors="coerce").to_numpy(dtype=float)
            if smoothing and smoothing > 0:
                y = smooth_ema(y, smoothing)
            fig.add_trace(line_trace(xs, y, name=f"{labels.get(rid, rid)} {split or metric}",
                                     color=colors[rid], dash=dash, showlegend=False,
                                     legendgroup=rid), row=r, col=c)
    title = (f"{column_title(metric)}: train (dotted) and val (solid)" if paired
             else column_title(metric))
    fig = _layout(fig, title=title,
                  xtitle="", ytitle="", log_y=log_y, height=260 * rows + 60,
                  uirevision=uirevision or f"multiples-{metric}")
    fig.update_layout(hovermode="closest")
    return fig


def group_band_figure(groups: Mapping[str, Sequence[pd.DataFrame]], column: str, *,
                      colors: Mapping[str, str] | None = None, smoothing: float = 0.0,
                      x: str = "epoch", log_y: bool = False, uirevision: str | None = None
                      ) -> go.Figure:
    """Mean ± one standard deviation across the runs of each recorded group (folds, seeds,
    sweeps), epoch by epoch, drawn where those epochs lie on the axis `x` (the members'
    mean step or elapsed time there; members must have that axis, see has_axis). The
    statistics are tracking.aggregate's `curve_stats` (population sd, ddof=0), the numbers
    the group record and the Group page show, so one band has one definition."""
    names = list(groups)
    colors = colors or run_colors(names)
    fig = go.Figure()
    for g in names:
        hs = {str(i): h.assign(_x=x_values(h, x)) for i, h in enumerate(groups[g])
              if column in h.columns}
        agg = curve_stats(hs)
        if agg.empty or f"{column}_mean" not in agg.columns:
            continue
        mean = pd.to_numeric(agg[f"{column}_mean"], errors="coerce").to_numpy(dtype=float)
        std = pd.to_numeric(agg[f"{column}_std"], errors="coerce").fillna(0).to_numpy(
            dtype=float)
        if smoothing and smoothing > 0:
            mean = smooth_ema(mean, smoothing)
        xs = agg["_x_mean"].to_numpy(dtype=float)
        fig.add_trace(band_trace(xs, mean, std, color=colors[g], name=f"{g} ±1 sd",
                                 legendgroup=g))
        fig.add_trace(line_trace(xs, mean, name=f"{g} (n={int(agg['n'].max())})",
                                 color=colors[g], legendgroup=g))
    return _layout(fig, title=f"{column_title(column)}: group mean ± 1 sd",
                   xtitle=X_AXES.get(x, x), ytitle=column, log_y=log_y,
                   uirevision=uirevision or f"groups-{column}", height=420)


def band_trace(x: np.ndarray, mean: np.ndarray, std: np.ndarray, *, color: str,
               name: str = "±1 sd", legendgroup: str | None = None, alpha: float = 0.18,
               showlegend: bool = False) -> go.Scatter:
    """The ±1 sd band around a mean line, as one filled polygon (no hover)."""
    return go.Scatter(x=np.concatenate([x, x[::-1]]),
                      y=np.concatenate([mean + std, (mean - std)[::-1]]),
                      fill="toself", mode="lines", fillcolor=_rgba(color, alpha),
                      line=dict(width=0), hoverinfo="skip", showlegend=showlegend,
                      legendgroup=legendgroup, name=name)


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def aggregate_curve_figure(curves: pd.DataFrame, column: str, *, label: str = "group",
                           color: str = PALETTE[0], uirevision: str | None = None
                           ) -> go.Figure:
    """A group's aggregate curve (tracking's `M_mean` / `M_std` columns per epoch): the mean
    with a ±1 sd band, and how many members each epoch averages in the hover."""
    _require(curves, "epoch")
    _require(curves, f"{column}_mean")
    ep = pd.to_numeric(curves["epoch"], errors="coerce").to_numpy(dtype=float)
    mean = pd.to_numeric(curves[f"{column}_mean"], errors="coerce").to_numpy(dtype=float)
    std = (pd.to_numeric(curves[f"{column}_std"], errors="coerce").fillna(0)
           .to_numpy(dtype=float) if f"{column}_std" in curves.columns else np.zeros_like(mean))
    n = curves["n"].to_numpy() if "n" in curves.columns else np.full(len(ep), np.nan)
    fig = go.Figure()
    fig.add_trace(band_trace(ep, mean, std, color=color, showlegend=True))
    fig.add_trace(go.Scatter(x=ep, y=mean, mode="lines", name=f"{label} mean",
                             line=dict(color=color, width=2), customdata=n,
                             hovertemplate="epoch %{x}: %{y:.4g} (n=%{customdata})"
                                           "<extra></extra>"))
    return _layout(fig, title=f"{column_title(column)}: {label} mean ± 1 sd", xtitle="epoch",
                   ytitle=column, uirevision=uirevision or f"group-{column}", height=380)


def steps_figure(steps: pd.DataFrame, *, smoothing: float = 0.0,
                 uirevision: str | None = None) -> go.Figure:
    """Per-step training loss (and gradient norm on a second axis), every logged step: the
    view where a 100,000-step run needs extreme-keeping downsampling."""
    _require(steps, "step")
    _require(steps, "loss")
    x = pd.to_numeric(steps["step"], errors="coerce").to_numpy(dtype=float)
    y = pd.to_numeric(steps["loss"], errors="coerce").to_numpy(dtype=float)
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    if smoothing and smoothing > 0:
        fig.add_trace(line_trace(x, y, name="loss (raw)", color=TRAIN_COLOR, width=1,
                                 opacity=0.3, showlegend=False, legendgroup="loss"))
        y = smooth_ema(y, smoothing)
    fig.add_trace(line_trace(x, y, name="loss", color=TRAIN_COLOR, legendgroup="loss"))
    if "grad_norm" in steps.columns:
        g = pd.to_numeric(steps["grad_norm"], errors="coerce").to_numpy(dtype=float)
        fig.add_trace(line_trace(x, np.where(g > 0, g, np.nan), name="grad norm",
                                 color="#9467bd", width=1), secondary_y=True)
        fig.update_yaxes(title_text="grad norm", type="log", secondary_y=True,
                         showgrid=False)
    fig = _layout(fig, title="Per-step training loss", xtitle="step", ytitle="loss",
                  uirevision=uirevision or "steps", height=320)
    if "grad_norm" in steps.columns:  # _layout styles every y axis; the second stays log
        fig.update_yaxes(title_text="grad norm", type="log", secondary_y=True)
    return fig


def group_metric_figure(curves: pd.DataFrame, column: str,
                        members: Mapping[str, pd.DataFrame] | None = None, *,
                        label: str = "mean", color: str = PALETTE[0], log_y: bool = False,
                        uirevision: str | None = None) -> go.Figure:
    """One metric of a group: each member as a thin faint line (hover names it), the mean
    over the members as a thick line with a ±1 sd band (tracking.aggregate_group's
    `M_mean` / `M_std`, so the dashboard and the CLI report the same numbers)."""
    fig = go.Figure()
    for name, h in (members or {}).items():
        if h is None or h.empty or column not in h.columns or "epoch" not in h.columns:
            continue
        fig.add_trace(go.Scatter(
            x=pd.to_numeric(h["epoch"], errors="coerce").to_numpy(dtype=float),
            y=pd.to_numeric(h[column], errors="coerce").to_numpy(dtype=float),
            mode="lines", name=name, legendgroup="members", showlegend=False, opacity=0.45,
            line=dict(color="#7f7f7f", width=1),
            hovertemplate=f"{plain(name)}: %{{y:.4g}}<extra></extra>"))
    if curves is not None and not curves.empty and f"{column}_mean" in curves.columns:
        ep = pd.to_numeric(curves["epoch"], errors="coerce").to_numpy(dtype=float)
        mean = pd.to_numeric(curves[f"{column}_mean"], errors="coerce").to_numpy(dtype=float)
        std = (pd.to_numeric(curves[f"{column}_std"], errors="coerce").fillna(0)
               .to_numpy(dtype=float) if f"{column}_std" in curves.columns
               else np.zeros_like(mean))
        n = curves["n"].to_numpy() if "n" in curves.columns else np.full(len(ep), np.nan)
        ok = np.isfinite(mean)
        ep, mean, std, n = ep[ok], mean[ok], std[ok], n[ok]
        fig.add_trace(band_trace(ep, mean, std, color=color, alpha=0.22, showlegend=True))
        fig.add_trace(go.Scatter(x=ep, y=mean, mode="lines", name=label,
                                 line=dict(color=color, width=3), customdata=n,
                                 hovertemplate="mean %{y:.4g} (n=%{customdata})"
                                               "<extra></extra>"))
    return _layout(fig, title=column_title(column), xtitle="epoch",
                   ytitle=column, log_y=log_y, uirevision=uirevision or f"group-{column}",
                   height=340)


def setting_curves_figure(settings: Mapping[str, Mapping[str, pd.DataFrame]], column: str, *,
                          log_y: bool = False, uirevision: str | None = None) -> go.Figure:
    """One metric of a sweep, per setting (a sweep is judged per setting, never averaged
    across settings): each setting's members as thin lines in its colour, and where a
    setting has several members (seeds) their mean with a ±1 sd band (curve_stats).
    `settings`: setting label -> {member name: history}."""
    colors = run_colors(list(settings))
    fig = go.Figure()
    for label, members in settings.items():
        hs = {k: h for k, h in members.items()
              if h is not None and column in h.columns and "epoch" in h.columns}
        for name, h in hs.items():
            fig.add_trace(line_trace(
                x_values(h), pd.to_numeric(h[column], errors="coerce").to_numpy(float),
                name=f"{label} · {name}", color=colors[label], width=1 if len(hs) > 1 else 2,
                opacity=0.45 if len(hs) > 1 else 1.0, legendgroup=label,
                showlegend=len(hs) == 1))
        stats = curve_stats(hs)
        if len(hs) < 2 or f"{column}_mean" not in stats.columns:
            continue
        ep = stats["epoch"].to_numpy(dtype=float)
        mean = pd.to_numeric(stats[f"{column}_mean"], errors="coerce").to_numpy(float)
        std = pd.to_numeric(stats[f"{column}_std"], errors="coerce").fillna(0).to_numpy(float)
        fig.add_trace(band_trace(ep, mean, std, color=colors[label], legendgroup=label))
        fig.add_trace(line_trace(ep, mean, name=f"{label} (mean of {len(hs)})",
                                 color=colors[label], width=3, legendgroup=label))
    fig = _layout(fig, title=f"{column_title(column)} by setting", xtitle="epoch", ytitle=column,
                  log_y=log_y, uirevision=uirevision or f"settings-{column}", height=380)
    # settings' names are long: their legend goes under the chart, clear of the title
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.2, x=0,
                                  xanchor="left"), margin=dict(b=90))
    return fig


def _as_number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def parallel_coordinates_figure(ranking: pd.DataFrame, score: str = "val_loss_mean"
                                ) -> go.Figure:
    """A sweep's settings as lines across one axis per hyperparameter and a last axis for the
    validation score (coloured by it, lower val loss = darker). Numeric parameters spanning
    a decade or more are drawn on a log10 axis; text parameters get one tick per value."""
    _require(ranking, "params")
    _require(ranking, score)
    params = [p if isinstance(p, Mapping) else {} for p in ranking["params"]]
    names: list[str] = []
    for p in params:
        names += [k for k in p if k not in names]
    dims = []
    for k in names:
        raw = [p.get(k) for p in params]
        nums = [_as_number(v) for v in raw]
        if all(x is not None for x in nums):
            vals = np.array(nums, dtype=float)
            if (vals > 0).all() and vals.max() / vals.min() >= 10:
                dims.append(dict(label=f"log10 {k}", values=np.log10(vals),
                                 tickvals=np.log10(sorted(set(vals))),
                                 ticktext=[str(v) for v in sorted(set(vals))]))
            else:
                dims.append(dict(label=k, values=vals, tickformat=".3~g"))
        else:
            cats = sorted({str(v) for v in raw})
            dims.append(dict(label=k, values=[cats.index(str(v)) for v in raw],
                             tickvals=list(range(len(cats))), ticktext=cats))
    sc = pd.to_numeric(ranking[score], errors="coerce").to_numpy(dtype=float)
    label = score.replace("_mean", "")
    dims.append(dict(label=f"{label} (mean)", values=sc, tickformat=".4~g"))
    fig = go.Figure(go.Parcoords(
        line=dict(color=np.nan_to_num(sc, nan=np.nanmax(sc) if np.isfinite(sc).any() else 0),
                  colorscale="Viridis", reversescale=label.endswith("loss"),
                  showscale=True, colorbar=dict(title=label)),
        dimensions=dims, labelside="bottom"))
    # axis names below the axes: above, the first one ran into the title; tickformat rounds
    # the ticks and the range labels at the axis ends (0.115324 -> 0.115)
    fig.update_layout(template=TEMPLATE, height=400, margin=dict(l=60, r=60, t=60, b=60),
                      title=dict(text=f"Hyperparameters against {label}", x=0.01))
    return fig
