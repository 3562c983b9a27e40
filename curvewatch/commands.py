"""The trainer's command as the text Curvewatch prints for a user to type: one source for the
trainer, its group runner and the dashboard (diagnosis, which imports none of them, takes it
as a parameter)."""
from __future__ import annotations

import shlex
from dataclasses import dataclass

#: The trainer's module, as `python -m` runs it: it exists in a checkout and in an installed
#: package alike (`python -m trainer` is a checkout-only shim, the `curvewatch` command
#: exists only once the package is installed).
TRAINER_MODULE = "curvewatch.trainer"
#: The trainer's command for a shell where Curvewatch cannot know how the reader calls it
#: (the dashboard's pages, advice shown by several front ends, text kept in files).
SHELL_TRAINER = f"python -m {TRAINER_MODULE}"


@dataclass(frozen=True)
class Invocation:
    """How the user called the trainer: `prog` as they typed it (`python -m trainer`,
    `python -m curvewatch.trainer`, `curvewatch`) and the --runs-dir they gave, if any."""

    prog: str = SHELL_TRAINER
    runs_dir: str | None = None

    def command(self, *words: str) -> str:
        """`prog WORDS [--runs-dir DIR]`, quoted for a shell: a command that works where the
        user typed theirs."""
        more = ["--runs-dir", self.runs_dir] if self.runs_dir else []
        return " ".join([self.prog, *map(shlex.quote, [*words, *more])])


#: The words for a caller not known: the command that works everywhere, no --runs-dir.
ANY_SHELL = Invocation()
