"""The suite's own scheduling: tests that share an expensive fixture run on one xdist worker.

pytest 9.2 with pytest-xdist 3.8 silently dropped every `xdist_group` (the corpus was evaluated
and the dashboard's runs trained once per worker); requirements.txt pins pytest below 9.2."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.xdist_group("grouping_check")


def test_an_xdist_group_mark_puts_its_tests_on_one_worker(request: pytest.FixtureRequest) -> None:
    if not getattr(request.config.option, "loadgroup", False):  # set on xdist's workers only
        pytest.skip("not running under pytest-xdist --dist loadgroup")
    assert request.node.nodeid.endswith("@grouping_check"), (
        f"xdist_group ignored: node id {request.node.nodeid!r} carries no group, so loadgroup "
        "spreads grouped tests over workers (check the pytest / pytest-xdist pins)")
