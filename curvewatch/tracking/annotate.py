"""A run's notes and tags, edited after it was created (the dashboard's Run page).

run.json is rewritten through `jsonio.update_json`, the one read-modify-write that other
rewrites of it (a resume's new epoch count) also take, so neither loses the other's change;
every other key of run.json is written back as it was read.
"""
from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any, Iterable

from . import paths as P
from .jsonio import update_json
from .reader import MAX_NOTES, MAX_TAGS

#: The longest tag written (the reader shows names and tags up to reader.MAX_TEXT).
MAX_TAG_CHARS = 64


def check_notes(notes: Any) -> str:
    """`notes` if it is a string of at most MAX_NOTES characters without control characters
    other than line breaks and tabs; ValueError naming what is wrong otherwise."""
    if not isinstance(notes, str):
        raise ValueError(f"notes must be a string, got {type(notes).__name__}")
    if len(notes) > MAX_NOTES:
        raise ValueError(f"notes must be at most {MAX_NOTES} characters, got {len(notes)}")
    bad = [c for c in notes if c not in "\n\t" and unicodedata.category(c) in ("Cc", "Cs")]
    if bad:
        raise ValueError(f"notes must not contain control characters, found {''.join(bad)!r}")
    return notes


def check_tags(tags: Iterable[Any]) -> list[str]:
    """`tags` stripped, empty ones and repeats dropped, each a usable name of at most
    MAX_TAG_CHARS characters without commas; ValueError naming the tag otherwise."""
    out: list[str] = []
    for tag in tags:
        if not isinstance(tag, str):
            raise ValueError(f"a tag must be a string, got {tag!r}")
        tag = tag.strip()
        if not tag or tag in out:
            continue
        if len(tag) > MAX_TAG_CHARS or "," in tag:
            raise ValueError(f"tag {tag[:80]!r} must be at most {MAX_TAG_CHARS} characters "
                             "without commas")
        try:
            P.check_name(tag)
        except ValueError as e:
            raise ValueError(str(e).replace("run name", f"tag {tag!r}")) from None
        out.append(tag)
    if len(out) > MAX_TAGS:
        raise ValueError(f"a run may have at most {MAX_TAGS} tags, got {len(out)}")
    return out


def annotate_run(run_dir: str | Path, *, notes: str | None = None,
                 tags: Iterable[str] | None = None) -> dict[str, Any]:
    """Set a run's `notes` and/or `tags` in its run.json (None leaves one as it is), after
    checking them (ValueError); returns the run.json written."""
    new: dict[str, Any] = {}
    if notes is not None:
        new["notes"] = check_notes(notes)
    if tags is not None:
        new["tags"] = check_tags(tags)

    def change(info: Any) -> Any:
        if not isinstance(info, dict):
            raise ValueError(f"{P.RUN_JSON} does not hold a JSON object")
        return {**info, **new}

    return dict(update_json(Path(run_dir) / P.RUN_JSON, change))
