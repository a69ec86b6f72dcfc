"""Request and response bodies of the HTTP API that are not domain types."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from clickrec.core.types import FilterName, FilterValues, Id, MetadataColumns


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


class Health(BaseModel):
    status: str
    checks: dict[str, Any] = {}


class BatchJobBody(BaseModel):
    """A batch job: ``recommendations`` (lines like ``{"user_id", "num_results", "filter"}``)
    or ``segments`` (lines like ``{"item_id", "num_results"}``); each line is checked when
    the job runs and a bad one gets its error in the output."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["recommendations", "segments"]
    lines: list[dict[str, Any]] = Field(min_length=1, max_length=10_000)


class BatchJobView(BaseModel):
    id: str
    kind: str
    state: str
    total: int
    done: int
    errors: int
    created_at: float
    finished_at: float | None
    error: str | None


class DeadLetterSelection(BaseModel):
    """Which dead letters: the given seqs, or every parked one when ``seqs`` is omitted."""

    model_config = ConfigDict(extra="forbid")

    seqs: list[Annotated[int, Field(ge=1)]] | None = Field(default=None, max_length=10_000)
