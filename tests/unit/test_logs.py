"""How retrying loops log a store that stays down."""

from __future__ import annotations

import logging

import pytest

from clickrec.observability.logs import FailureStreak


def test_a_failing_loop_logs_one_traceback_then_a_line_a_minute(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = iter([0.0, 1.0, 30.0, 61.0, 62.0, 200.0])
    monkeypatch.setattr("clickrec.observability.logs.time.monotonic", lambda: next(clock))
    streak = FailureStreak(logging.getLogger("clickrec.test"), "the pass")
    with caplog.at_level(logging.INFO, logger="clickrec.test"):
        for _ in range(5):  # failures at 0, 1, 30, 61 and 62 s
            try:
                raise ConnectionError("store down")
            except ConnectionError:
                streak.failed()
        streak.worked()  # at 200 s
        streak.worked()  # nothing more to say
    said = [(r.levelname, r.getMessage(), r.exc_info is not None) for r in caplog.records]
    assert said == [
        ("ERROR", "the pass failed; retrying", True),
        ("WARNING", "the pass failing for 61 s", False),
        ("INFO", "the pass works again after 200 s", False),
    ]
