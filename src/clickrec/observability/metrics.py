"""Prometheus metrics of one server process, in a registry of its own (no global state).

Counters and histograms are updated on the request path; gauges that describe the stores
(consumer lag, live model age) are computed when Prometheus scrapes, so idle servers cost
nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.process_collector import ProcessCollector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


@dataclass
class Metrics:
    registry: CollectorRegistry
    requests: Histogram
    events_accepted: Counter
    events_duplicate: Counter
    batch_size: Histogram
    consumer_lag: Gauge
    dead_letters: Gauge
    model_age: Gauge
    model_info: Gauge
    freshness: Histogram
    model_metric: Gauge
    training_seconds: Gauge
    recommendations_served: Counter
    answers_behind: Counter
    recommendation_clicks: Counter
    online_readers: Gauge

    def render(self, refresh: Callable[[Metrics], None]) -> bytes:
        """The text exposition format, after ``refresh`` has set the scrape-time gauges."""
        refresh(self)
        return generate_latest(self.registry)


def create_metrics() -> Metrics:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)  # resident memory, CPU seconds, open files
    return Metrics(
        registry=registry,
        requests=Histogram(
            "clickrec_request_seconds",
            "HTTP request latency by route and status class",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        events_accepted=Counter(
            "clickrec_events_accepted", "Events durably appended to the log", registry=registry
        ),
        events_duplicate=Counter(
            "clickrec_events_duplicate", "Events dropped as repeated event_ids", registry=registry
        ),
        batch_size=Histogram(
            "clickrec_event_batch_size",
            "Events per accepted POST /v1/events",
            buckets=(1, 10, 50, 100, 250, 500, 1000),
            registry=registry,
        ),
        online_readers=Gauge(
            "clickrec_online_readers",
            "Readers in the online state now ('kept'), and those dropped for serving."
            "max_readers since start ('evicted')",
            ["state"],
            registry=registry,
        ),
        consumer_lag=Gauge(
            "clickrec_consumer_lag_events",
            "Log events not yet processed, per consumer",
            ["consumer"],
            registry=registry,
        ),
        dead_letters=Gauge(
            "clickrec_dead_letters",
            "Events parked after their retries (parked or awaiting replay), per consumer",
            ["consumer"],
            registry=registry,
        ),
        model_age=Gauge(
            "clickrec_model_age_seconds",
            "Age of the live model version (0 if none)",
            registry=registry,
        ),
        model_info=Gauge(
            "clickrec_model_info",
            "The model version this server serves (value 1)",
            ["version", "recipe"],
            registry=registry,
        ),
        freshness=Histogram(
            "clickrec_recommendation_freshness_seconds",
            "From an event's acknowledgement to recommendations that reflect it (per batch "
            "applied to the online state: own requests at once, others' through the log tail)",
            ["path"],
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=registry,
        ),
        model_metric=Gauge(
            "clickrec_model_offline_metric",
            "The live model's offline metrics from its training run (its replay: hr@k, mrr@k)",
            ["metric"],
            registry=registry,
        ),
        training_seconds=Gauge(
            "clickrec_training_run_seconds",
            "Duration of the latest finished training run, by its state",
            ["state"],
            registry=registry,
        ),
        recommendations_served=Counter(
            "clickrec_recommendations_served",
            "Recommendation lists answered, by endpoint (the denominator of the online CTR)",
            ["endpoint"],
            registry=registry,
        ),
        answers_behind=Counter(
            "clickrec_answers_behind_log",
            "Answers that went out before this server caught up with events other processes "
            "appended (the wait is bounded by serving.catch_up_seconds)",
            registry=registry,
        ),
        recommendation_clicks=Counter(
            "clickrec_recommendation_clicks",
            "Events accepted that carry a recommendation_id (the numerator of the online CTR)",
            registry=registry,
        ),
    )
