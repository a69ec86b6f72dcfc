"""Request and response bodies of the HTTP API that are not domain types."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from clickrec.core.types import Context, FilterName, FilterValues, Id, MetadataColumns


class PromotionBody(BaseModel):
    """Personalize's promotion: ``percent_promoted_items`` of the slots come from the items
    ``filter`` allows, in their own order, placed among the others."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]
    percent_promoted_items: int = Field(ge=1, le=100)
    filter: FilterName
    filter_values: FilterValues | None = None


Promotions = Annotated[list[PromotionBody], Field(max_length=3)]


class RankingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: Id | None = None
    session_id: Id | None = None
    item_ids: list[Annotated[str, StringConstraints(min_length=1, max_length=256)]] = Field(
        min_length=1, max_length=500
    )
    filter: FilterName | None = None
    filter_values: FilterValues | None = None
    metadata_columns: MetadataColumns | None = None
    context: Context | None = None


class FilterBody(BaseModel):
    """A filter expression in Amazon Personalize's language (at most 2,500 characters)."""

    model_config = ConfigDict(extra="forbid")

    expression: Annotated[str, StringConstraints(min_length=1, max_length=2500)]


class FilterView(BaseModel):
    name: str
    expression: str
    parameters: list[str]
    created_at: float
    updated_at: float


class Accepted(BaseModel):
    accepted: int
    duplicates: int


class ItemScore(BaseModel):
    item_id: str
    score: float
    reason: str = Field(description="why it is here, e.g. 'because you read \"…\"'")
    promotion_name: str | None = None
    metadata: dict[str, Any] | None = None


class RecommendationList(BaseModel):
    recommendation_id: str
    model_version: str | None
    recipe: str
    items: list[ItemScore]


class RunState(BaseModel):
    id: str
    state: str


class ErasureView(BaseModel):
    """An erasure job: ``pending`` (online state, log, profile), ``lake`` (rewriting the
    lake's files), ``done``. ``counts`` says what was removed; the ids are never shown."""

    id: str
    state: str
    created_at: float
    finished_at: float | None = None
    counts: dict[str, int] = {}
    error: str | None = None


class Health(BaseModel):
    status: str
    checks: dict[str, Any] = {}


class BatchJobBody(BaseModel):
    """A batch job: ``recommendations`` (lines like ``{"user_id", "num_results", "filter"}``)
    or ``segments`` (lines like ``{"item_id", "num_results"}``); each line is checked when
    the job runs and a bad one gets its error in the output. At most 10,000 lines, fewer
    when ``batch.max_lines_per_job`` says so."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["recommendations", "segments"]
    lines: list[dict[str, Any]] = Field(min_length=1, max_length=10_000)


class BatchJobView(BaseModel):
    """A batch job: ``state`` is pending, running, succeeded, failed or expired (its output
    deleted after the retention period, at ``expires_at``); ``erased_lines`` counts the
    output lines that reader erasures changed since the job finished."""

    id: str
    kind: str
    state: str
    total: int
    done: int
    errors: int
    erased_lines: int = 0
    created_at: float
    finished_at: float | None
    expires_at: float | None = None
    error: str | None


class DeadLetterSelection(BaseModel):
    """Which dead letters: the given seqs, or every parked one when ``seqs`` is omitted."""

    model_config = ConfigDict(extra="forbid")

    seqs: list[Annotated[int, Field(ge=1, lt=2**63)]] | None = Field(
        default=None, max_length=10_000
    )


# -- the built-in dashboard (GET /v1/dashboard/data) -------------------------------------------
class ChartLine(BaseModel):
    """One line of a chart: values ``v`` at times ``t``; null where there was no data."""

    name: str
    t: list[float] = Field(description="Unix seconds")
    v: list[float | None]


class CtrTotals(BaseModel):
    """Since this process started: events accepted, recommendation lists served, events
    that carry a recommendation_id (clicks), and clicks per list served."""

    events: float
    served: float
    clicks: float
    ctr: float | None


class DashboardModel(BaseModel):
    version: str
    created_at: float
    recipe: str
    live: bool
    served: bool = Field(description="the version this process answers with")
    metrics: dict[str, float] = Field(description="offline metrics on the training holdout")


class DashboardItem(BaseModel):
    item_id: str
    title: str | None
    score: float


class DashboardData(BaseModel):
    at: float
    started_at: float
    sample_seconds: float
    events_per_minute: ChartLine
    latency_ms: list[ChartLine] = Field(description="recommendation routes: p50, p95, p99")
    consumer_lag: list[ChartLine] = Field(description="log events behind, per consumer")
    dead_letters: ChartLine
    ctr: ChartLine
    totals: CtrTotals
    models: list[DashboardModel]
    trending: list[DashboardItem]
