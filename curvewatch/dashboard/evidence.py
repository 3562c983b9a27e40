"""The words of the Run page's Evidence expander: what each figure a detector puts in a
finding's `evidence` means, so the page shows a table of plain meanings instead of JSON keys.
The keys are the detectors' (curvewatch/diagnosis/detectors/ and diagnosis/forecast.py);
tests/test_dashboard_figures.py fails when a detector writes a key this glossary lacks."""
from __future__ import annotations

import math
from typing import Any, Mapping

#: The meaning of an evidence key, whichever detector wrote it.
MEANINGS = {
    # the level of the loss and its noise
    "sigma": "the loss's noise: the typical change from one epoch to the next (a robust "
             "spread of the differences over the recent epochs)",
    "trend_z": "the trend of the recent values as a Mann-Kendall z (corrected for "
               "autocorrelation): below −2.3 a significant fall, above 1.96 a significant "
               "rise for overfitting, near 0 no trend",
    "trend_window": "how many recent epochs the trend test looked at",
    "window": "how many recent epochs the trend test looked at",
    "best_level": "the lowest smoothed level of the loss (a rolling median) so far",
    "level_now": "the smoothed level of the loss now (the median of the last epochs)",
    "level_before": "the smoothed level at the start of the trend window",
    "first_value": "the loss at the first epoch",
    "min_delta_used": "the smallest fall that counted as an improvement (in loss units)",
    # overfitting and overconfidence
    "min_epoch": "the epoch of the lowest validation loss (the weights best.pt holds)",
    "min_val_loss": "the lowest validation loss, at min_epoch",
    "rise": "how far the level rose above its minimum since then",
    "rise_relative": "that rise as a fraction of the minimum (0.05 = 5%)",
    "rise_needed": "how far it had to rise to count: the largest of min_delta, overfit_rise × "
                   "the minimum and overfit_z noise units",
    "epochs_since_min": "epochs since the minimum",
    "train_loss_at_min": "the training loss at the minimum's epoch",
    "train_loss_now": "the training loss now (it kept falling while validation rose)",
    "val_acc_at_min": "the validation accuracy at the minimum's epoch",
    "val_acc_now": "the validation accuracy now (about the same: the model grew more "
                   "confident, not more wrong)",
    # plateau and converged
    "wait": "epochs since the last significant improvement",
    "patience": "the epochs a plateau waits for an improvement (threshold patience; "
                "gap_patience while the training loss still falls)",
    "flat_patience": "the shorter wait for a curve that is flat both ways (flat_patience)",
    "flat_change": "the change the recent slope projects over the next patience epochs "
                   "(a fraction; NaN: not judged as flat)",
    "expected_gain": "the fall the recent slope projects over the next patience epochs, as a "
                     "fraction of the best level",
    "expected_gain_high": "the upper confidence bound of that fall: a plateau needs it below "
                          "plateau_gain",
    "last_lr_change_epoch": "the last epoch the learning rate stepped (−1: never)",
    "level_at_start": "the smoothed level where the flat stretch began",
    "gain_since_start": "how much the level fell since then, as a fraction",
    "epochs_since_start": "epochs since the flat stretch began (what stopping there saves)",
    "converged_level": "a plateau at or below this fraction of the first value counts as "
                       "converged",
    # underfitting and vanishing gradients
    "train_first": "the training loss at the first epoch",
    "train_now": "the training loss now (the median of the last epochs)",
    "plateau_since_epoch": "the epoch since which the training loss has set no significant low",
    "grad_now": "the gradient norm now (the median of the last epochs)",
    "grad_peak": "the largest gradient norm of the run",
    "largest_layer_norm": "the largest parameter tensor's gradient norm over the last epochs",
    "smallest_ratio": "the smallest tensor's gradient norm as a fraction of the largest's",
    "layers": "the parameter tensors concerned (at most 20), the most extreme first",
    # exploding gradients and divergence
    "peak": "the highest gradient norm of the episode",
    "reference_median": "the gradient norm it is compared with (its recent median, or its "
                        "lowest level when it grew slowly)",
    "factor": "how many times the reference the value had to reach (threshold)",
    "first_non_finite_epoch": "the first epoch whose loss was NaN or infinite",
    "best_before": "the lowest loss before that",
    "minimum": "the lowest loss before it rose",
    "minimum_epoch": "the epoch of that minimum",
    "now": "the loss at the last epoch",
    "exploded_epochs": "epochs the loss has stayed above factor × its minimum",
    "exploded_epoch": "the epoch the loss first reached the explosion level",
    "exploded_value": "the loss at that epoch",
    "chance_loss": "the loss of a model that learned nothing (NaN: not known)",
    "chance_level": "the fraction of the chance loss that counts as learned nothing",
    "epochs_at_chance": "epochs the loss has stayed at chance level since",
    "untrained_level": "the loss of the untrained model (the chance loss, else the first value)",
    "collapsed_epochs": "epochs the training loss has stayed at the untrained level",
    # unstable
    "swings": "how many sudden rises in the latest cluster",
    "largest_relative_rise": "the largest rise in one epoch, as a fraction of the loss before",
    "swing_epochs": "the epochs of those rises (at most 20)",
    # the forecast appended to plateau, converged and still-improving findings
    "forecast": "where the fitted learning curve projects the loss at the planned end",
    "forecast.until_epoch": "the planned last epoch the forecast projects to",
    "forecast.projected": "the loss the fitted curve projects there",
    "forecast.low": "the low end of the projection's band",
    "forecast.high": "the high end of the projection's band",
    "forecast.gain": "the fall from the best level the projection expects, as a fraction",
    "forecast.family": "the curve law fitted (e.g. a power law or an exponential)",
}

#: Where a key means something else for one kind of finding: (kind, key) -> meaning.
KIND_MEANINGS = {
    ("divergence", "factor"): "how many times its minimum the loss had to reach to count as "
                              "exploded (threshold explode_factor)",
    ("exploding_gradients", "factor"): "how many times the reference the gradient norm had "
                                       "to reach (threshold grad_explode_factor)",
    ("underfitting", "wait"): "epochs since the training loss last improved significantly",
    ("overconfidence", "rise"): "how far the validation loss rose above its minimum",
}


def meaning(kind: str, key: str) -> str | None:
    """The plain meaning of evidence `key` in a finding of `kind`; None when the glossary
    lacks it."""
    return KIND_MEANINGS.get((kind, key)) or MEANINGS.get(key)


def evidence_rows(kind: str, evidence: Mapping[str, Any]) -> list[dict[str, str]]:
    """One row per figure ({figure, value, meaning}); a nested mapping (the forecast) as
    `outer.inner` rows; numbers to 4 significant digits, lists comma-separated."""
    rows = []
    for key, value in evidence.items():
        if isinstance(value, Mapping):
            rows += [{"figure": f"{key}.{k}", "value": _value(v),
                      "meaning": meaning(kind, f"{key}.{k}") or ""} for k, v in value.items()]
        else:
            rows.append({"figure": key, "value": _value(value),
                         "meaning": meaning(kind, key) or ""})
    return rows


def _value(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return "NaN" if math.isnan(v) else f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_value(x) for x in v)
    return str(v)
