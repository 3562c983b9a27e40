"""README.md and docs/ as a newcomer follows them: every command line they show uses options
its command has, and every link between the pages leads to a file and a heading that exist."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from conftest import ROOT
from curvewatch.cli import add_ui
from curvewatch.trainer.cli import build_parser

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: a command as the pages write it, from the checkout or installed
COMMAND = re.compile(r"(?:python -m trainer|\bcurvewatch) (run|sweep|list|stop|resume|demo|"
                     r"import|ui)\b([^`#]*)")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser("curvewatch", [add_ui])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def logical_lines(text: str) -> list[str]:
    """The page's lines, a shell line continued with a trailing backslash joined to the next."""
    return re.sub(r"\\\n\s*", " ", text).splitlines()


def documented_flags(page: Path) -> list[tuple[str, str, str]]:
    """(command, flag, line) for each option written after a command on one of `page`'s lines
    (up to a closing backtick or a shell comment)."""
    found = []
    for line in logical_lines(page.read_text()):
        for m in COMMAND.finditer(line):
            found += [(m.group(1), flag, line.strip()) for flag in FLAG.findall(m.group(2))]
    return found


def test_every_option_the_pages_show_exists():
    options = {name: set(p._option_string_actions) for name, p in commands().items()}
    shown = [(page.name, *item) for page in PAGES for item in documented_flags(page)]
    assert len(shown) > 50, "the pattern no longer finds the pages' command lines"
    unknown = [f"{page}: {command} {flag} in {line!r}" for page, command, flag, line in shown
               if flag not in options[command]]
    assert not unknown, "options the CLI does not have:\n" + "\n".join(unknown)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def headings(page: Path) -> set[str]:
    return {slug(h) for h in re.findall(r"^#+ (.*)$", page.read_text(), re.M)}


def test_every_link_between_the_pages_leads_somewhere():
    broken = []
    for page in PAGES:
        prose = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code is not linked
        for link in LINK.findall(prose):
            if re.match(r"[a-z]+:", link):
                continue  # http(s), mailto: another site's business
            path, _, anchor = link.partition("#")
            target = (page.parent / path).resolve() if path else page
            if not target.exists():
                broken.append(f"{page.name}: {link} (no such file)")
            elif anchor and target.suffix == ".md" and anchor not in headings(target):
                broken.append(f"{page.name}: {link} (no such heading in {target.name})")
    assert not broken, "broken links:\n" + "\n".join(broken)
