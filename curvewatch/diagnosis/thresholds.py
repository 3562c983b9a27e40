"""`Thresholds`: every tunable of the diagnosis engine, with its default and why.

docs/diagnosis.md explains each default at length. All fields are plain ints or floats
so that a command line can set any of them as ``--threshold NAME=VALUE``.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, Iterable, Mapping

__all__ = ["Thresholds"]


def _f(default: float | int, help: str, *, lo: float | None = None, lo_open: bool = False,
       hi: float | None = None, hi_open: bool = False) -> Any:
    return field(default=default, metadata={"help": help, "lo": lo, "lo_open": lo_open,
                                            "hi": hi, "hi_open": hi_open})


@dataclass(frozen=True)
class Thresholds:
    """Tunables of `diagnose`. Units: "epochs" count rows of the history; "sigma" is the
    robust noise level of a series, 1.4826 * MAD of its epoch-to-epoch differences / sqrt(2),
    measured over the last ``noise_window`` epochs.

    Patience, worked through (``patience=3``, validation loss, smoothed level shown)::

        epoch  1    2    3    4    5    6
        level  1.0  0.8  0.8  0.8  0.8  0.8
        wait   0    0    1    2    3    -> plateau reported at epoch 5, start_epoch 2

    ``wait`` counts epochs since the last significant improvement (a drop of the smoothed
    level by more than the minimum delta); a plateau is reported once ``wait >= patience``.
    """

    patience: int = _f(10, "Epochs without a significant improvement of the smoothed monitored "
                       "loss before a plateau is reported (reported when wait >= patience).", lo=1)
    window: int = _f(5, "Epochs in the causal rolling median that smooths every loss and in the "
                     "'level now' median.", lo=1)
    noise_window: int = _f(60, "Trailing epochs used to estimate the noise level sigma "
                           "(robust MAD of epoch-to-epoch differences).", lo=4)
    autocorr: float = _f(0.3, "Assumed lag-1 autocorrelation of per-epoch noise (slowly drifting "
                         "weights make neighbouring epochs alike); widens noise bands and trend tests.",
                         lo=0.0, hi=0.9)
    min_delta: float = _f(1e-4, "Absolute minimum change of a loss that counts as an improvement "
                          "or a rise (Keras min_delta), in loss units.", lo=0.0)
    min_rel_delta: float = _f(0.002, "Relative minimum change that counts as an improvement on a "
                              "plateau check, as a fraction of the best level.", lo=0.0)
    plateau_z: float = _f(0.0, "A drop of the smoothed level counts as an improvement only if it "
                          "exceeds plateau_z times the noise of the smoothed level.", lo=0.0)
    plateau_gain: float = _f(0.01, "No plateau while the robust (Theil-Sen) trend of the last "
                             "2*patience epochs projects a relative improvement above this over the "
                             "next patience epochs (0.01 = 1%).", lo=0.0)
    plateau_ci_z: float = _f(0.25, "Standard errors in the upper confidence bound of the projected "
                             "gain: a plateau needs gain + plateau_ci_z * se below plateau_gain "
                             "(evidence of flatness; 0: the trend's estimate alone).", lo=0.0)
    flat_patience: int = _f(4, "A shorter wait (epochs without a new low) after which a plateau is reported "
                            "when the monitored loss is flat: its Theil-Sen trend over the last patience "
                            "epochs projects a change within flat_gain over the next patience epochs, and "
                            "training is not unstable. flat_patience >= patience switches it off.", lo=1)
    flat_gain: float = _f(0.005, "Relative change (0.005 = 0.5%) that the last patience epochs' trend may "
                          "project over the next patience epochs for the loss to count as flat "
                          "(flat_patience).", lo=0.0)
    creep_level: float = _f(0.5, "A loss that sets a new low every few epochs (so the wait never reaches "
                            "patience) is a plateau when its last 2*patience epochs fall steadily by at "
                            "most flat_gain per patience epochs (upper confidence bound) and its level is "
                            "at most this fraction of its first value: a slow creep at a higher loss can "
                            "be a slow start that speeds up.", lo=0.0)
    gap_patience: int = _f(20, "The wait a plateau of the validation loss needs while the training loss "
                           "still falls significantly (Mann-Kendall z < -trend_z over trend_window "
                           "epochs) by more than plateau_gain of the validation level per patience "
                           "epochs: the generalisation gap grows, the usual start of overfitting, so "
                           "the short flat wait is off too, and no plateau is reported while the "
                           "validation level lies more than overfit_rise above its best. "
                           "gap_patience <= patience switches it off.",
                           lo=1)
    converged_level: float = _f(0.2, "A plateau at or below this fraction of the monitored loss's "
                                "first value is a run that converged (info, 'converged'); above it, "
                                "a plateau is a problem (warning, 'plateau'). Both stop a run that "
                                "early-stops on plateau.", lo=0.0)
    plateau_start_z: float = _f(2.5, "The reported plateau start is the last epoch whose smoothed level "
                                "improved by more than plateau_start_z times its noise.", lo=0.0)
    trend_window: int = _f(20, "Trailing epochs of the trend tests that keep a plateau from being "
                           "reported while the loss still falls.", lo=3)
    trend_z: float = _f(2.3, "Mann-Kendall z (autocorrelation-corrected) that makes a trend "
                        "significant: a loss still falling blocks a plateau or underfitting and is "
                        "still_improving; overfitting has its own, overfit_trend_z.",
                        lo=0.0, lo_open=True)
    start_from_epoch: int = _f(5, "No overfitting or plateau finding before this epoch (warm-up "
                               "guard, Keras start_from_epoch).", lo=1)
    cooldown: int = _f(3, "Epochs after a learning-rate step (a change by 2x or more in one epoch) "
                       "during which no plateau is reported (torch ReduceLROnPlateau cooldown); smooth "
                       "schedules are not steps, and a step does not restart the wait.", lo=0)
    overfit_rise: float = _f(0.03, "Minimum relative rise of the validation level above its "
                             "smoothed minimum for overfitting (0.03 = 3%).", lo=0.0)
    overfit_step_rise: float = _f(0.05, "overfit_rise for a minimum within patience epochs after a "
                                  "learning-rate step (a change by 2x or more in one epoch): a step "
                                  "decay drops the loss to a sharp low it settles back from by a few "
                                  "percent.", lo=0.0)
    overfit_z: float = _f(3.0, "The rise must also exceed overfit_z times the noise of a "
                          "window-median (sigma * sqrt(inflation / window)).", lo=0.0)
    overfit_confirm_z: float = _f(4.0, "Overfitting is confirmed (by a trend, persistence) only for "
                                  "a rise of at least this many noise units of a window-median (the "
                                  "corpus label's 4); a smaller one stays possible_overfitting.",
                                  lo=0.0)
    overfit_confirm_rise: float = _f(0.05, "Overfitting is confirmed (by a trend, persistence) only "
                                     "for a rise of at least this fraction of the smoothed minimum "
                                     "(the corpus label's 5%); a smaller one stays "
                                     "possible_overfitting.", lo=0.0)
    overfit_trend_z: float = _f(1.96, "Mann-Kendall z (autocorrelation-corrected) of the values "
                                "since the validation minimum that confirms overfitting: lower than "
                                "trend_z because overfitting also needs the rise above the noise and "
                                "a falling training loss (the generalisation gap), so the trend test "
                                "is one of three pieces of evidence, not the only one.", lo=0.0,
                                lo_open=True)
    overfit_min_epochs: int = _f(3, "Epochs after the validation minimum before overfitting can be "
                                 "reported.", lo=1)
    overfit_patience: int = _f(10, "Epochs without a new low of the validation loss after which a rise "
                               "of the confirmed size (overfit_confirm_rise, overfit_confirm_z), with "
                               "no falling trend since the minimum and the median of these epochs "
                               "above the needed rise, is confirmed as overfitting without a "
                               "significant rising trend (persistence); before that it is "
                               "possible_overfitting (info, no stop).",
                               lo=1)
    overfit_clear_factor: float = _f(4.0, "A rise of this many times the needed rise is overfitting at "
                                     "once, even while it eases back, unless the values since the "
                                     "minimum trend down significantly (z <= -overfit_trend_z); a "
                                     "smaller rise whose values since its highest level trend down is "
                                     "a bump, not overfitting.",
                                     lo=1.0)
    confirm: int = _f(2, "Consecutive epochs a rise must hold before overfitting is reported "
                      "(persistence against one noisy epoch).", lo=1)
    explode_factor: float = _f(10.0, "A loss above explode_factor times its running minimum (and "
                               "above its first value) has exploded.", lo=1.0, lo_open=True)
    diverge_epochs: int = _f(3, "Consecutive exploded epochs up to the last one that make an "
                             "explosion a divergence rather than instability.", lo=1)
    chance_level: float = _f(0.9, "A loss at or above this fraction of the chance-level loss (the loss of a "
                             "model that learned nothing: ln K for K classes, the target variance for "
                             "MSE; diagnose's chance_loss) has no skill: a model predicting the class "
                             "prior scores 0.95 ln 2 on a 37/63 split.", lo=0.0, lo_open=True, hi=1.0)
    chance_explode: float = _f(2.0, "A loss from chance_level to below chance_explode times the chance-level "
                               "loss is at chance level (far above it, a model may be overconfident yet "
                               "predict well). Divergence the history cannot show: a first epoch at or "
                               "above chance_explode times the chance level, or a training loss back "
                               "from its minimum to chance_explode times it or more, then diverge_epochs "
                               "epochs at chance level.", lo=1.0, lo_open=True)
    unstable_rise: float = _f(0.1, "A one-epoch rise of the training loss by more than this "
                              "fraction of its previous value counts as a swing.", lo=0.0, lo_open=True)
    unstable_range: float = _f(0.05, "... and by more than this fraction of the loss range learned "
                               "so far (first value minus minimum).", lo=0.0)
    unstable_swings: int = _f(3, "Swings within unstable_window epochs that make a run unstable "
                              "(one swing larger than half the learned range suffices).", lo=1)
    unstable_window: int = _f(20, "Epochs that group swings into one unstable episode.", lo=2)
    grad_explode_factor: float = _f(10.0, "Gradient norm above this many times its median over the "
                                    "preceding window counts as exploding.", lo=1.0, lo_open=True)
    grad_vanish_factor: float = _f(1e-3, "Gradient norm below this fraction of its early maximum "
                                   "(or a layer's below this fraction of the largest layer's) "
                                   "counts as vanishing.", lo=0.0, lo_open=True, hi=1.0, hi_open=True)
    underfit_level: float = _f(0.5, "Underfitting: the training loss plateaued at or above this "
                               "fraction of its first-epoch value.", lo=0.0, lo_open=True)
    underfit_gap: float = _f(0.1, "Underfitting: |val - train| below this fraction of the training "
                             "loss (the model is not memorising).", lo=0.0)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            kind = "an int" if f.type in ("int", int) else "a number"
            want_int = f.type in ("int", int)
            bad_type = isinstance(value, bool) or not isinstance(value, (int, float)) or (
                want_int and not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())))
            if bad_type or (isinstance(value, float) and not math.isfinite(value)):
                raise ValueError(f"{f.name} must be {kind}{_range_text(f.metadata)}, got {value!r}")
            if not _in_range(float(value), f.metadata):
                raise ValueError(f"{f.name} must be {kind}{_range_text(f.metadata)}, got {value!r}")
            object.__setattr__(self, f.name, int(value) if want_int else float(value))

    @classmethod
    def describe(cls) -> list[tuple[str, int | float, str]]:
        """(name, default, help) for every field, in declaration order, for --help text."""
        out: list[tuple[str, int | float, str]] = []
        for f in fields(cls):
            assert isinstance(f.default, (int, float))  # _f gives every field a number
            out.append((f.name, f.default, f"{f.metadata['help']} Accepted: "
                        f"{'int' if f.type in ('int', int) else 'number'}{_range_text(f.metadata)}."))
        return out

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def replace(self, **changes: Any) -> "Thresholds":
        """A copy with some fields changed (validated again)."""
        unknown = [k for k in changes if k not in self.names()]
        if unknown:
            raise ValueError(f"unknown threshold {', '.join(unknown)}; known: {', '.join(self.names())}")
        return replace(self, **changes)

    @classmethod
    def from_pairs(cls, pairs: Iterable[str], base: "Thresholds | None" = None) -> "Thresholds":
        """Build from ``NAME=VALUE`` strings, as given to ``--threshold NAME=VALUE``.

        >>> Thresholds.from_pairs(["patience=12", "overfit_rise=0.05"]).patience
        12
        """
        base = base or cls()
        changes: dict[str, Any] = {}
        types = {f.name: f.type for f in fields(cls)}
        for pair in pairs:
            name, sep, raw = str(pair).partition("=")
            name = name.strip().replace("-", "_")
            if not sep:
                raise ValueError(f"threshold must be NAME=VALUE, got {pair!r}")
            if name not in types:
                near = difflib.get_close_matches(name, types, n=1)
                raise ValueError(f"unknown threshold {name!r}; known: {', '.join(types)}"
                                 + (f"; did you mean {near[0]!r}?" if near else ""))
            try:
                value: Any = float(raw.strip())
            except ValueError:
                raise ValueError(f"{name} must be a number, got {raw.strip()!r}") from None
            if types[name] in ("int", int) and value.is_integer():
                value = int(value)
            changes[name] = value
        return base.replace(**changes)

    @classmethod
    def for_run(cls, patience: int | None = None,
                overrides: Mapping[str, Any] | Iterable[tuple[str, Any]] = ()) -> "Thresholds":
        """The thresholds a run is judged with: its patience (None: the default), then its
        ``--threshold`` overrides, NAME -> VALUE. ValueError names a bad name or value."""
        items = overrides.items() if isinstance(overrides, Mapping) else overrides
        base = cls() if patience is None else cls(patience=patience)
        return cls.from_pairs([f"{k}={v}" for k, v in items], base=base)

    def to_dict(self) -> dict[str, int | float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _in_range(v: float, md: Any) -> bool:
    lo, hi = md.get("lo"), md.get("hi")
    if lo is not None and (v <= lo if md.get("lo_open") else v < lo):
        return False
    if hi is not None and (v >= hi if md.get("hi_open") else v > hi):
        return False
    return True


def _range_text(md: Any) -> str:
    parts = []
    if md.get("lo") is not None:
        parts.append(f"{'>' if md.get('lo_open') else '>='} {_num(md['lo'])}")
    if md.get("hi") is not None:
        parts.append(f"{'<' if md.get('hi_open') else '<='} {_num(md['hi'])}")
    return (" " + " and ".join(parts)) if parts else ""


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)
