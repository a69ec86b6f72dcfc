"""Crash safety: SIGKILL the server under load, restart it, and lose nothing acknowledged.

The harness (tests/crash.py) kills a real `clickrec serve` at random moments; here
four times, `bench/crash.py` twenty and more."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import crash

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_sigkill_under_load_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    report = crash.run(tmp_path / "home", kills=4)
    print(report)
    assert report.acknowledged > 500
    assert report.lost == 0 and report.found == report.acknowledged
    assert report.duplicated == 0
    assert report.archived_duplicated == 0 and report.archived_missing == 0  # exactly once
    assert report.state_rebuilt
    assert report.leftover_processes == 0  # workers of the killed servers stopped too
    assert report.ok
