"""The Launch form's model: which widget each trainer option gets, how form values turn into
the raw dict `trainer.config.validate` accepts (the CLI's own validation and messages), and
how a run's config pre-fills the form (clone and edit). Pure: no streamlit, no torch."""
from __future__ import annotations

from typing import Any, Mapping

from curvewatch.trainer import config as tc, errors as te

SECTIONS: dict[str, tuple[str, ...]] = {
    "Data": ("dataset", "target", "train_size", "val_fraction", "test_fraction",
             "label_noise", "seed", "validation", "fold"),
    "Model": ("model", "hidden", "activation", "dropout"),
    "Optimisation": ("epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay",
                     "l1", "clip_grad_norm"),
    "Schedule": ("schedule", "warmup_epochs"),
    "Early stopping and diagnosis": ("early_stop", "patience", "thresholds"),
    "Other": ("device", "threads", "log_every_steps", "min_epoch_seconds"),
}


def choices(name: str) -> tuple[str, ...] | None:
    """Fixed choices of an option (selectbox), or None for free text."""
    return {"activation": tc.ACTIVATIONS, "optimizer": tc.OPTIMIZERS,
            "schedule": tc.SCHEDULES, "device": tc.DEVICES}.get(name)


def suggestions(name: str) -> tuple[str, ...] | None:
    """Suggested values of an option that also accepts free text (csv:PATH, module:function)."""
    return {"dataset": tc.DATASETS, "model": tc.MODELS}.get(name)


def sections() -> dict[str, tuple[str, ...]]:
    """The form's sections with only the options the trainer has; any option it grows later
    still gets a field, under "More"."""
    out = {name: tuple(n for n in names if n in tc.FIELDS)
           for name, names in SECTIONS.items()}
    listed = {n for names in SECTIONS.values() for n in names}
    more = tuple(n for n in tc.FIELDS if n not in listed)
    if more:
        out["More"] = more
    return {k: v for k, v in out.items() if v}


def option_names() -> list[str]:
    return [n for names in sections().values() for n in names]


def help_text(name: str) -> str:
    if name not in tc.FIELDS:
        return ""
    return tc.FIELDS[name].metadata.get("help", "")


def to_text(name: str, value: Any) -> str:
    """A config value as the text a form field shows (the CLI's spelling)."""
    if value is None:
        return ""
    if name == "thresholds":
        items = value.items() if isinstance(value, Mapping) else value
        return ", ".join(f"{k}={v}" for k, v in items)
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def defaults(prefill: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Form values: the CLI's defaults, overridden by a run's config when cloning.
    Multiselect options get lists, every other field text."""
    base = tc.DEFAULTS.to_dict()
    if prefill:
        base.update({k: v for k, v in prefill.items() if k in base})
    out: dict[str, Any] = {}
    for name in option_names():
        v = base.get(name)
        if name == "early_stop":
            out[name] = [str(k) for k in (v or [])]
        else:
            out[name] = to_text(name, v)
    return out


def to_raw(values: Mapping[str, Any]) -> dict[str, Any]:
    """Form values -> the loose dict `trainer.config.validate` takes (same as CLI strings).
    Empty text means "use the default" (as leaving a flag out)."""
    raw: dict[str, Any] = {}
    for name, v in values.items():
        if name == "early_stop":
            raw[name] = ",".join(v) if v else ""
            continue
        if name == "thresholds":
            parts = [p.strip() for p in str(v or "").split(",") if p.strip()]
            if parts:
                raw[name] = parts
            continue
        if v is None or (isinstance(v, str) and not v.strip()):
            continue
        raw[name] = v.strip() if isinstance(v, str) else v
    return raw


def validate(values: Mapping[str, Any]) -> tuple[Any, str | None]:
    """(TrainConfig, None) or (None, the CLI's message) for form values."""
    try:
        return tc.validate(to_raw(values)), None
    except te.ConfigError as e:
        return None, str(e)
