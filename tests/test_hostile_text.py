"""Issue 15, plain text: run names, tags, stop reasons, group names, problems and URL
parameters are shown as text on every page, never as markdown (no image fetched from a remote
host, no spoofed link, no code span broken out of). Checked on the markdown each element is
given (AppTest): once its escapes are removed, no image, link or autolink to the hostile
host is left. The browser check with a request guard is in test_browser_dashboard.py."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hostile as H  # noqa: E402
from curvewatch import tracking  # noqa: E402
from curvewatch.dashboard import tables  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EVIL = "![t](http://evil.example/beacon.png) [Run deleted - log in again](http://evil.example/x)"
EVIL_TICKS = "`x` [a](http://evil.example/q) `"
ESCAPED = re.compile(r"\\.")


def _bad(markdown: str) -> list[str]:
    """Markup that would make the browser fetch or link to the hostile host."""
    bare = ESCAPED.sub("", markdown)
    return [m for m in ("![", "](http", "http://evil", "www.evil", ":red[") if m in bare]


def test_md_leaves_no_markup_and_keeps_run_ids_readable():
    assert _bad(tables.md(EVIL)) == [] and _bad(tables.md(EVIL_TICKS)) == []
    assert tables.md("20261206-101925-moons-mlp-295f") == "20261206-101925-moons-mlp-295f"
    assert tables.md("a\nb\r\nc") == "a b  c"
    assert _bad(tables.md("go to www.evil.example :red[now]")) == []


@pytest.fixture
def evil_runs(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    a = H.good_run(runs, "a")
    b = H.good_run(runs, "b")
    for run in (a, b):
        info = json.loads((run / "run.json").read_text())
        info.update(name=EVIL, tags=[EVIL, ":red[x]"], group=EVIL_TICKS)
        (run / "run.json").write_text(json.dumps(info))
    st = json.loads((a / "status.json").read_text())
    st.update(state="stopped", stop_reason=EVIL,
              stopped_by={"kind": "x](http://evil.example/k)", "severity": "warning",
                          "message": EVIL, "advice": EVIL, "start_epoch": 1})
    (a / "status.json").write_text(json.dumps(st))
    g = tracking.GroupWriter.create(runs, name="g", method="repeat", validation="holdout",
                                    members=[{"index": 0, "name": EVIL}], pid=0)
    rec = json.loads((g.path / "group.json").read_text())
    rec.update(name=EVIL, method=EVIL, stop_reason=EVIL,
               members=[{"index": 0, "name": EVIL, "state": "failed", "error": EVIL}])
    (g.path / "group.json").write_text(json.dumps(rec))
    monkeypatch.setenv("CURVEWATCH_RUNS", str(runs))
    monkeypatch.chdir(ROOT)
    return a, b, g


def _page(name: str, **query):
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(ROOT / "curvewatch" / "dashboard" / "views" / f"{name}.py"),
                           default_timeout=30)
    for k, v in query.items():
        at.query_params[k] = v
    return at.run()


def _markdown_shown(at) -> list[str]:
    out = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "warning", "error",
                 "info", "success"):
        out += [str(e.value) for e in getattr(at, kind)]
    out += [str(e.label) for e in at.expander]
    return out


def test_every_page_shows_hostile_names_reasons_and_url_values_as_text(evil_runs):
    a, b, g = evil_runs
    pages = [_page("runs"), _page("run", run=a.name), _page("run", run=b.name),
             _page("run", run=f"{EVIL_TICKS}nope"), _page("group", group=g.id.split("-")[0]),
             _page("group", group=g.id), _page("compare", runs=f"{a.name},{b.name},{EVIL}"),
             _page("compare", group=EVIL_TICKS)]
    for at in pages:
        assert not at.exception, at.exception
        shown = _markdown_shown(at)
        assert shown
        bad = [(s, _bad(s)) for s in shown if _bad(s)]
        assert not bad, (pages.index(at), bad)
    run_page = pages[1]
    assert any("Run deleted - log in again" in str(t.value) for t in run_page.title)
