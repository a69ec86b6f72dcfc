"""The dashboard's in-process series: percentiles from histogram buckets, rates between
samples, and sampling only when due."""

from __future__ import annotations

import numpy as np
import pytest

from clickrec.observability.metrics import LATENCY_BUCKETS, create_metrics
from clickrec.observability.series import (
    Counters,
    Sample,
    Series,
    quantile,
    read_counters,
)

BOUNDS = (0.01, 0.1, 1.0)


def cumulative(*per_bucket: int) -> np.ndarray:
    return np.cumsum(np.array(per_bucket, dtype=float))


def test_quantile_interpolates_within_its_bucket() -> None:
    counts = cumulative(50, 40, 10, 0)  # 0-10 ms: 50, 10-100 ms: 40, 100 ms-1 s: 10
    assert quantile(0.5, BOUNDS, counts) == pytest.approx(0.01)
    assert quantile(0.25, BOUNDS, counts) == pytest.approx(0.005)
    assert quantile(0.7, BOUNDS, counts) == pytest.approx(0.01 + 0.09 * 20 / 40)
    assert quantile(0.95, BOUNDS, counts) == pytest.approx(0.1 + 0.9 * 5 / 10)


def test_quantile_of_nothing_is_unknown_and_beyond_the_last_bound_is_that_bound() -> None:
    assert quantile(0.5, BOUNDS, cumulative(0, 0, 0, 0)) is None
    assert quantile(0.99, BOUNDS, cumulative(1, 0, 0, 9)) == 1.0


def counters(events: float, served: float = 0, clicks: float = 0) -> Counters:
    return Counters(events, served, clicks, np.zeros(len(LATENCY_BUCKETS) + 1))


def test_rates_are_derived_between_samples_and_taken_only_when_due() -> None:
    series = Series(Sample(100.0, counters(0)), every=5.0)
    taken: list[float] = []

    def take(events: float, served: float, clicks: float):  # type: ignore[no-untyped-def]
        def at(now: float) -> Sample:
            taken.append(now)
            return Sample(now, counters(events, served, clicks), {"archive": 3}, 1)

        return at

    series.sample(130.0, take(10, 4, 1))
    series.sample(133.0, take(99, 99, 99))  # not due: three seconds after the last one
    series.sample(136.0, take(13, 4, 1))
    assert taken == [130.0, 136.0]
    assert series.events_per_minute().v == pytest.approx([20.0, 30.0])
    assert series.ctr().v == [0.25, None]
    assert series.latency_ms()[0].v == [None, None]
    assert series.dead_letters().t == [130.0, 136.0]  # the baseline has no gauges
    assert [line.name for line in series.consumer_lag()] == ["archive"]


def test_the_history_is_bounded() -> None:
    series = Series(Sample(0.0, counters(0)), size=3, every=1.0)
    for k in range(1, 10):
        series.sample(float(k), lambda now: Sample(now, counters(now), {}, 0))
    assert series.events_per_minute().t == [8.0, 9.0]


def test_counters_are_read_from_the_registry() -> None:
    metrics = create_metrics()
    metrics.events_accepted.inc(7)
    metrics.recommendations_served.labels("trending").inc(2)
    metrics.recommendations_served.labels("similar").inc(2)
    metrics.recommendation_clicks.inc()
    metrics.requests.labels("GET", "/v1/trending", "200").observe(0.003)
    metrics.requests.labels("GET", "/v1/dashboard/data", "200").observe(0.5)
    read = read_counters(metrics)
    assert (read.events, read.served, read.clicks) == (7, 4, 1)
    # Only the recommendation routes: 0.003 s is in the 5 ms bucket and above.
    assert read.latency[-1] == 1
    assert read.latency[LATENCY_BUCKETS.index(0.0025)] == 0
    assert read.latency[LATENCY_BUCKETS.index(0.005)] == 1
