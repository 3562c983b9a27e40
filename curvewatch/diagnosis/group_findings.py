"""What a group's members say together: when every fold (resample, seed, run) of a group
was still improving at its last epoch, or every one overfits, that is a verdict on the
setting, not on one unlucky member. Pure: the members' finding kinds in, findings out."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Sequence

#: What one member of a group is called, by group method.
MEMBER_WORDS = {"kfold": "fold", "bootstrap": "resample", "repeat": "seed", "sweep": "run"}


@dataclass(frozen=True)
class GroupFinding:
    """A finding every diagnosed member of a group shares: `kind` is the members' finding
    kind (still_improving, overfitting), `members` how many share it."""

    kind: str
    severity: str
    members: int
    message: str
    advice: str


def group_findings(kinds: Sequence[Collection[str]], *, method: str = "kfold",
                   best_epochs: Sequence[int | None] = (),
                   epochs: Sequence[int | None] = (), group: str = "GROUP", trainer: str
                   ) -> list[GroupFinding]:
    """Findings of a group from its members' finding kinds (`kinds[i]`: member i's, e.g.
    from status.json's flags; an empty collection for a member not diagnosed yet is left
    out). Only when at least two members are diagnosed and every one shares the kind.
    `best_epochs[i]` / `epochs[i]`: member i's best epoch and epochs done, and `group` its
    id, for the words; `trainer`: the trainer's command the advice names (the caller's:
    curvewatch.commands, which diagnosis does not import)."""
    unit = MEMBER_WORDS.get(method, "member")
    seen = [i for i, k in enumerate(kinds) if k]
    if len(seen) < 2:
        return []
    out = []
    if all("still_improving" in kinds[i] for i in seen):
        last = _span([epochs[i] for i in seen if i < len(epochs)])
        out.append(GroupFinding(
            "still_improving", "warning", len(seen),
            f"Every {unit} ({len(seen)} of {len(kinds)}) was still improving at its last "
            f"epoch{f' ({last})' if last else ''}: the group's score understates what this "
            "setting reaches.",
            f"Train longer: resume the group with more epochs ({trainer} resume {group} "
            "--epochs N), or raise the learning rate if progress is slow."))
    if all("overfitting" in kinds[i] for i in seen):
        best = _span([best_epochs[i] for i in seen if i < len(best_epochs)])
        out.append(GroupFinding(
            "overfitting", "warning", len(seen),
            f"Every {unit} ({len(seen)} of {len(kinds)}) overfits"
            f"{f': validation loss is lowest at epochs {best} and rises after' if best else ''}"
            ": the setting, not one split, memorises the training data.",
            "Keep each member's best weights (best.pt) and train about as many epochs as the "
            "best epochs show, or regularise: --dropout, --weight-decay, more training data, "
            "--early-stop overfitting."))
    return out


def _span(values: Sequence[int | None]) -> str:
    """"8" or "8-14" over the known values; "" when none is known."""
    known = sorted(v for v in values if v is not None)
    if not known:
        return ""
    return str(known[0]) if known[0] == known[-1] else f"{known[0]}-{known[-1]}"
