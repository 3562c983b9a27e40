"""The forecast of the validation loss drawn as a dashed band to the run's planned end (pure:
history in, plotly traces out; diagnosis.forecast does the fitting)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from curvewatch.diagnosis import Forecast, forecast

from .figures import VAL_COLOR

#: The band's fill: the validation colour, faint.
FILL = "rgba(255, 127, 14, 0.12)"
NAME = "forecast"


def band_traces(history: pd.DataFrame, until_epoch: int | None, *,
                metric: str = "val_loss") -> list[go.Scatter]:
    """Three traces (upper edge, lower edge filled up to it, projected centre), all dashed,
    from the last epoch to `until_epoch`; [] when there is no planned end beyond the last
    epoch or the forecast has nothing to say (too short, too noisy, rising)."""
    fc = band_forecast(history, until_epoch, metric=metric)
    return [] if fc is None else traces(fc)


def band_forecast(history: pd.DataFrame, until_epoch: int | None, *,
                  metric: str = "val_loss") -> Forecast | None:
    """The forecast band_traces draws, or None when it draws nothing (a long run's Run page
    keeps it with its cached diagnosis: data.run_view)."""
    if not until_epoch or "epoch" not in history.columns or history.empty:
        return None
    try:
        return forecast(history, int(until_epoch), metric=metric)
    except ValueError:
        return None


def traces(fc: Forecast) -> list[go.Scatter]:
    """The band of one forecast; the hover says the expected gain in words."""
    x = list(fc.path_epochs)
    words = f"{fc.message()} ({fc.family}; {fc.low:.4g}–{fc.high:.4g} at epoch {fc.until_epoch})"
    edge = {"color": VAL_COLOR, "width": 1, "dash": "dot"}
    return [
        go.Scatter(x=x, y=list(fc.path_high), mode="lines", line=edge, name=f"{NAME} high",
                   legendgroup=NAME, showlegend=False, hoverinfo="skip"),
        go.Scatter(x=x, y=list(fc.path_low), mode="lines", line=edge, fill="tonexty",
                   fillcolor=FILL, name=f"{NAME} low", legendgroup=NAME, showlegend=False,
                   hoverinfo="skip"),
        go.Scatter(x=x, y=list(fc.path_projected), mode="lines", name=NAME, legendgroup=NAME,
                   line={"color": VAL_COLOR, "width": 2, "dash": "dash"},
                   hovertemplate=f"epoch %{{x}}: %{{y:.4g}}<br>{words}<extra>{NAME}</extra>"),
    ]
