"""A short in-process history of the server's figures, for the built-in dashboard.

Samples are taken when the dashboard asks for data (at most one per ``every`` seconds), so
a server nobody watches does no work for it. Counters are cumulative; rates, latency
percentiles and the click-through rate are derived between samples. The history lives in
one process and starts again with it: Prometheus (deploy/) keeps the long one.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from prometheus_client.metrics_core import Metric

from clickrec.observability.metrics import LATENCY_BUCKETS, Metrics

QUANTILES = (0.5, 0.95, 0.99)
# The latency a reader waits for: routes that answer with recommendations.
RECOMMENDATION_ROUTES = frozenset(
    {
        "/v1/recommendations",
        "/v1/trending",
        "/v1/items/{item_id:path}/similar",
        "/v1/rankings",
        "/recommendations",
        "/personalize-ranking",
    }
)


@dataclass(frozen=True)
class Counters:
    """The cumulative counters of one process at one moment."""

    events: float  # accepted into the log
    served: float  # recommendation lists answered
    clicks: float  # accepted events that carry a recommendation_id
    latency: np.ndarray  # requests per latency bucket, cumulative (le), +Inf last


@dataclass(frozen=True)
class Sample:
    at: float  # Unix seconds
    counters: Counters
    lag: dict[str, int] = field(default_factory=dict)  # events behind, per consumer
    dead_letters: int | None = None  # None: not read (the baseline at start)


@dataclass(frozen=True)
class Line:
    """One chart line: values at times (Unix seconds); None where there was no data."""

    name: str
    t: list[float]
    v: list[float | None]


def read_counters(metrics: Metrics, routes: frozenset[str] = RECOMMENDATION_ROUTES) -> Counters:
    """The counters as Prometheus would scrape them; latency summed over ``routes``."""
    bounds = {str(b): i for i, b in enumerate(LATENCY_BUCKETS)}
    latency = np.zeros(len(LATENCY_BUCKETS) + 1)
    for family in metrics.requests.collect():
        for s in family.samples:
            if s.name.endswith("_bucket") and s.labels.get("route") in routes:
                latency[bounds.get(s.labels["le"], len(LATENCY_BUCKETS))] += s.value
    return Counters(
        events=_total(metrics.events_accepted.collect()),
        served=_total(metrics.recommendations_served.collect()),
        clicks=_total(metrics.recommendation_clicks.collect()),
        latency=latency,
    )


def _total(families: Iterable[Metric]) -> float:
    """A counter's ``_total`` summed over its labels."""
    return sum(s.value for family in families for s in family.samples if s.name.endswith("_total"))


def quantile(q: float, bounds: Sequence[float], cumulative: np.ndarray) -> float | None:
    """The ``q`` quantile of a histogram (cumulative counts per upper bound, +Inf last),
    interpolated within its bucket as Prometheus' histogram_quantile does; None if empty.
    In the +Inf bucket it is the highest finite bound (all that is known)."""
    total = float(cumulative[-1])
    if total <= 0:
        return None
    rank = q * total
    i = int(np.searchsorted(cumulative, rank, side="left"))
    if i >= len(bounds):
        return float(bounds[-1])
    lower = 0.0 if i == 0 else float(bounds[i - 1])
    below = 0.0 if i == 0 else float(cumulative[i - 1])
    inside = float(cumulative[i]) - below
    if inside <= 0:
        return float(bounds[i])
    return lower + (float(bounds[i]) - lower) * (rank - below) / inside


class Series:
    """The last ``size`` samples, at least ``every`` seconds apart: ten minutes or more by
    default (the page polls every 5 s; a little less here, so no poll finds it not due)."""

    def __init__(self, start: Sample, size: int = 150, every: float = 4.0) -> None:
        self.every = every
        self.started_at = start.at
        self._samples: deque[Sample] = deque([start], maxlen=size)
        self._lock = threading.Lock()

    def sample(self, now: float, take: Callable[[float], Sample]) -> None:
        """Add ``take(now)`` unless the newest sample is younger than ``every`` seconds."""
        with self._lock:
            if now - self._samples[-1].at >= self.every or len(self._samples) == 1:
                self._samples.append(take(now))

    @property
    def latest(self) -> Sample:
        return self._samples[-1]

    def events_per_minute(self) -> Line:
        pairs = self._pairs()
        return Line(
            "events",
            [b.at for _, b in pairs],
            [60 * (b.counters.events - a.counters.events) / (b.at - a.at) for a, b in pairs],
        )

    def latency_ms(self) -> list[Line]:
        """Recommendation latency percentiles per interval, in milliseconds."""
        pairs = self._pairs()
        t = [b.at for _, b in pairs]
        lines = []
        for q in QUANTILES:
            values = []
            for a, b in pairs:
                seconds = quantile(q, LATENCY_BUCKETS, b.counters.latency - a.counters.latency)
                values.append(None if seconds is None else round(1000 * seconds, 3))
            lines.append(Line(f"p{round(q * 100)}", t, values))
        return lines

    def ctr(self) -> Line:
        """Clicks per recommendation served, per interval; None where none was served."""
        pairs = self._pairs()
        values: list[float | None] = []
        for a, b in pairs:
            served = b.counters.served - a.counters.served
            clicks = b.counters.clicks - a.counters.clicks
            values.append(clicks / served if served > 0 else None)
        return Line("ctr", [b.at for _, b in pairs], values)

    def consumer_lag(self) -> list[Line]:
        samples = self._gauged()
        names = sorted({name for s in samples for name in s.lag})
        t = [s.at for s in samples]
        return [Line(n, t, [_float(s.lag.get(n)) for s in samples]) for n in names]

    def dead_letters(self) -> Line:
        samples = self._gauged()
        values = [_float(s.dead_letters) for s in samples]
        return Line("dead letters", [s.at for s in samples], values)

    def _pairs(self) -> list[tuple[Sample, Sample]]:
        with self._lock:
            samples = list(self._samples)
        return [(a, b) for a, b in zip(samples, samples[1:], strict=False) if b.at > a.at]

    def _gauged(self) -> list[Sample]:
        with self._lock:
            return [s for s in self._samples if s.dead_letters is not None]


def _float(value: int | None) -> float | None:
    return None if value is None else float(value)
