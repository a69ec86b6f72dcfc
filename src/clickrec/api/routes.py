"""HTTP routes: each parses, calls one use case of `app/`, and shapes the answer."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import TypeAdapter, ValidationError

from clickrec.api import deps, errors
from clickrec.api.docs import schema_of
from clickrec.api.errors import JSON
from clickrec.api.schemas import (
    Accepted,
    BatchJobBody,
    BatchJobView,
    DeadLetterSelection,
    ErasureView,
    FilterBody,
    FilterValues,
    FilterView,
    MetadataColumns,
    PromotionBody,
    Promotions,
    RankingRequest,
    RecommendationList,
    RunState,
)
from clickrec.app import (
    batch,
    catalog,
    dead_letters,
    erasure,
    filters,
    ingest,
    operate,
    recommend,
    training,
)
from clickrec.batch import MAX_PAGE_LINES, PAGE_LINES
from clickrec.core.errors import FieldError, InvalidInput
from clickrec.core.types import Context, EventBatch, ItemBatch, UserBatch
from clickrec.engine import ServingEngine
from clickrec.keys import Principal
from clickrec.observability import tracing
from clickrec.observability.metrics import Metrics
from clickrec.serving.service import Extras, Promotion, Selection

router = APIRouter()
Eng = Annotated[ServingEngine, Depends(deps.engine)]
Ingest = Annotated[Principal, Depends(deps.require("ingest"))]
Read = Annotated[Principal, Depends(deps.require("read"))]
Admin = Annotated[Principal, Depends(deps.require("admin"))]
NumResults = Annotated[int, Query(ge=1, le=500)]
OptId = Annotated[str | None, Query(min_length=1, max_length=256)]
OptFilter = Annotated[
    str | None, Query(pattern=r"^[A-Za-z0-9_.\-]{1,64}$", description="a filter's name")
]
OptFilterValues = Annotated[
    str | None,
    Query(
        max_length=8192,
        description='JSON object of the filter\'s $parameters, e.g. {"CATS": "\\"news\\""}',
    ),
]
OptColumns = Annotated[
    str | None,
    Query(max_length=1400, description="comma-separated item fields to return with each item"),
]
OptPromotions = Annotated[
    str | None,
    Query(
        max_length=8192,
        description="JSON list of promotions: "
        '[{"name", "percent_promoted_items", "filter", "filter_values"}]',
    ),
]
OptContext = Annotated[
    str | None,
    Query(
        max_length=8192,
        description='JSON object of the request\'s context, e.g. {"device": "phone"}: '
        "trending leans toward what trends among events with the same context",
    ),
]
_FILTER_VALUES: TypeAdapter[dict[str, str]] = TypeAdapter(FilterValues)
_CONTEXT: TypeAdapter[dict[str, str]] = TypeAdapter(Context)
_COLUMNS: TypeAdapter[list[str]] = TypeAdapter(MetadataColumns)
_PROMOTIONS: TypeAdapter[list[PromotionBody]] = TypeAdapter(Promotions)


def _invalid(field: str, exc: ValidationError) -> InvalidInput:
    err = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in err["loc"])
    return InvalidInput([FieldError(None, f"{field}.{where}" if where else field, err["msg"])])


def _extras(
    columns: str | list[str] | None, promotions: str | list[PromotionBody] | None = None
) -> Extras:
    """Metadata columns (comma-separated in a query) and promotions (JSON in a query)."""
    if isinstance(columns, str):
        try:
            columns = _COLUMNS.validate_python([c.strip() for c in columns.split(",")])
        except ValidationError as exc:
            raise _invalid("metadata_columns", exc) from exc
    if isinstance(promotions, str):
        try:
            promotions = _PROMOTIONS.validate_json(promotions)
        except ValidationError as exc:
            raise _invalid("promotions", exc) from exc
    promotions = promotions or []
    if sum(p.percent_promoted_items for p in promotions) > 100:
        message = "percent_promoted_items add up to more than 100"
        raise InvalidInput([FieldError(None, "promotions", message)])
    return Extras(
        tuple(dict.fromkeys(c.lower() for c in columns or [])),
        tuple(
            Promotion(p.name, p.percent_promoted_items, p.filter, p.filter_values or {})
            for p in promotions
        ),
    )


def _metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


def _context(raw: str | None) -> dict[str, str] | None:
    """A request's context map (a JSON object in a query string)."""
    if raw is None:
        return None
    try:
        return _CONTEXT.validate_json(raw)
    except ValidationError as exc:
        raise _invalid("context", exc) from exc


def _selection(name: str | None, values: str | dict[str, str] | None) -> Selection | None:
    """A request's filter and parameter values (a JSON object in a query string)."""
    if values is not None and name is None:
        raise InvalidInput([FieldError(None, "filter_values", "given without a filter")])
    if name is None:
        return None
    if isinstance(values, str):
        try:
            values = _FILTER_VALUES.validate_json(values)
        except ValidationError as exc:
            problem = exc.errors(include_url=False)[0]["msg"]
            raise InvalidInput([FieldError(None, "filter_values", problem)]) from exc
    return Selection(name, values or {})


@router.get("/healthz", tags=["health"])
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", tags=["health"])
def readyz(engine: Eng) -> JSON:
    """Ready to serve: stores reachable, a model or the fallback loaded, and the consumers
    within their lag bounds; 503 with the reasons otherwise."""
    now = operate.readiness(engine)
    body = {"status": "ok" if now.ready else "unavailable", "checks": now.checks}
    return JSON({**body, "reasons": now.reasons}, status_code=200 if now.ready else 503)


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request, engine: Eng, _: Admin) -> Response:
    """Prometheus exposition (admin key: the figures describe the whole deployment)."""
    body = request.app.state.metrics.render(lambda m: operate.refresh_metrics(engine, m))
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/openapi.json", include_in_schema=False)
def openapi(request: Request, _: Read) -> dict[str, Any]:
    """The same schema as the public GET /openapi.json (kept for clients that use it)."""
    return schema_of(request.app)


@router.post(
    "/v1/events",
    status_code=202,
    response_model=Accepted,
    tags=["events"],
    openapi_extra=errors.body_schema(EventBatch),
)
async def post_events(request: Request, engine: Eng, _: Ingest) -> JSON:
    """Served by ``raw.RawRoutes`` (see ``app``); declared here for the schema."""
    return await ingest_events(engine, request.app.state.metrics, await request.body())


async def ingest_events(engine: ServingEngine, metrics: Metrics, body: bytes) -> JSON:
    """Parse and validate on the event loop (pydantic's JSON parser, ~5 µs an event), then
    wait for the group commit without holding a thread."""
    with tracing.span("validate"):
        batch = errors.parse_body(EventBatch, body)
    result = await ingest.ingest(engine, metrics, batch.events)
    return JSON({"accepted": result.accepted, "duplicates": result.duplicates}, status_code=202)


@router.put("/v1/items", tags=["catalog"])
def put_items(batch: ItemBatch, engine: Eng, _: Ingest) -> dict[str, int]:
    return {"upserted": catalog.put_items(engine, [item.to_record() for item in batch.items])}


# Before the plain item routes: ids may contain '/', so the longer path must win.
@router.get(
    "/v1/items/{item_id:path}/similar", response_model=RecommendationList, tags=["recommendations"]
)
async def similar(
    request: Request,
    item_id: str,
    engine: Eng,
    _: Read,
    num_results: NumResults = 25,
    category: OptId = None,
    filter: OptFilter = None,
    filter_values: OptFilterValues = None,
    user_id: OptId = None,
    metadata_columns: OptColumns = None,
) -> JSON:
    """Items read together with ``item_id``; a filter may use ``CurrentItem`` fields and,
    with ``user_id``, that reader's interactions and profile."""
    selection = _selection(filter, filter_values)
    extras = _extras(metadata_columns)
    ranked = recommend.similar(
        engine, _metrics(request), item_id, num_results, category, selection, user_id, extras
    )
    return JSON(ranked.as_dict())


@router.get("/v1/items/{item_id:path}", tags=["catalog"])
def get_item(item_id: str, engine: Eng, _: Read) -> dict[str, Any]:
    return catalog.item(engine, item_id)


@router.delete("/v1/items/{item_id:path}", tags=["catalog"])
def delete_item(item_id: str, engine: Eng, _: Ingest) -> dict[str, str]:
    catalog.delete_item(engine, item_id)
    return {"deleted": item_id}


@router.put("/v1/users", tags=["catalog"])
def put_users(batch: UserBatch, engine: Eng, _: Ingest) -> dict[str, int]:
    return {"upserted": catalog.put_users(engine, [u.model_dump() for u in batch.users])}


@router.get("/v1/users/{user_id:path}", tags=["catalog"])
def get_user(
    user_id: str,
    engine: Eng,
    _: Read,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> dict[str, Any]:
    """The reader's profile and the recent history that their recommendations use."""
    return catalog.reader(engine, user_id, limit)


UserIdPath = Annotated[str, Path(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$")]


@router.delete(
    "/v1/users/{user_id:path}", status_code=202, response_model=ErasureView, tags=["catalog"]
)
def erase_user(user_id: UserIdPath, request: Request, engine: Eng, _: Admin) -> dict[str, Any]:
    """Erase a reader: online history, profile, events (theirs and their sessions'), the
    lake's copies and batch outputs. Returns a job to follow at GET /v1/erasures/{id}; when
    it is ``done`` no byte of the reader's ids is left in the engine's files."""
    job = erasure.submit(engine, user_id)
    request.state.audit_target = f"erasure {job['id']}"  # the audit log never names them
    return erasure.view(job)


@router.get("/v1/erasures", tags=["catalog"])
def list_erasures(engine: Eng, _: Admin) -> dict[str, Any]:
    return {"erasures": erasure.erasures(engine)}


@router.get("/v1/erasures/{erasure_id}", response_model=ErasureView, tags=["catalog"])
def get_erasure(erasure_id: str, engine: Eng, _: Admin) -> dict[str, Any]:
    return erasure.erasure(engine, erasure_id)


@router.get("/v1/recommendations", response_model=RecommendationList, tags=["recommendations"])
async def recommendations(
    request: Request,
    engine: Eng,
    _: Read,
    user_id: OptId = None,
    session_id: OptId = None,
    num_results: NumResults = 25,
    category: OptId = None,
    filter: OptFilter = None,
    filter_values: OptFilterValues = None,
    metadata_columns: OptColumns = None,
    promotions: OptPromotions = None,
    context: OptContext = None,
) -> JSON:
    selection = _selection(filter, filter_values)
    extras = _extras(metadata_columns, promotions)
    ranked = recommend.recommend(
        engine,
        _metrics(request),
        user_id,
        session_id,
        num_results,
        category,
        selection,
        extras,
        _context(context),
    )
    return JSON(ranked.as_dict())


@router.get("/v1/trending", response_model=RecommendationList, tags=["recommendations"])
async def trending(
    request: Request,
    engine: Eng,
    _: Read,
    num_results: NumResults = 25,
    category: OptId = None,
    filter: OptFilter = None,
    filter_values: OptFilterValues = None,
    metadata_columns: OptColumns = None,
    promotions: OptPromotions = None,
    context: OptContext = None,
) -> JSON:
    selection = _selection(filter, filter_values)
    extras = _extras(metadata_columns, promotions)
    ranked = recommend.trending(
        engine, _metrics(request), num_results, category, selection, extras, _context(context)
    )
    return JSON(ranked.as_dict())


@router.post("/v1/rankings", response_model=RecommendationList, tags=["recommendations"])
async def rankings(request: Request, body: RankingRequest, engine: Eng, _: Read) -> JSON:
    selection = _selection(body.filter, body.filter_values)
    extras = _extras(body.metadata_columns)
    ranked = recommend.rank(
        engine,
        _metrics(request),
        body.user_id,
        body.session_id,
        body.item_ids,
        selection,
        extras,
        body.context,
    )
    return JSON(ranked.as_dict())


# -- filters ---------------------------------------------------------------------------------
@router.put("/v1/filters/{name}", response_model=FilterView, tags=["filters"])
def put_filter(
    name: Annotated[str, Path(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")],
    body: FilterBody,
    engine: Eng,
    _: Admin,
) -> dict[str, Any]:
    """Create or replace a filter; a bad expression is a 422 that says where (line, column)."""
    return filters.put(engine, name, body.expression)


@router.get("/v1/filters", tags=["filters"])
def list_filters(engine: Eng, _: Read) -> dict[str, Any]:
    return {"filters": filters.filters(engine)}


@router.get("/v1/filters/{name}", response_model=FilterView, tags=["filters"])
def get_filter(name: str, engine: Eng, _: Read) -> dict[str, Any]:
    return filters.get(engine, name)


@router.delete("/v1/filters/{name}", status_code=204, tags=["filters"])
def delete_filter(name: str, engine: Eng, _: Admin) -> Response:
    filters.delete(engine, name)
    return Response(status_code=204)


@router.post("/v1/training-runs", status_code=202, response_model=RunState, tags=["training"])
def start_run(engine: Eng, _: Admin) -> dict[str, Any]:
    run = training.start(engine, "api")
    return {"id": run["id"], "state": run["state"]}


@router.get("/v1/training-runs", tags=["training"])
def list_runs(engine: Eng, _: Admin) -> dict[str, Any]:
    return {"runs": training.runs(engine)}


@router.get("/v1/training-runs/{run_id}", tags=["training"])
async def get_run(
    run_id: str,
    engine: Eng,
    _: Admin,
    wait: Annotated[
        float,
        Query(ge=0, le=300, description="seconds to wait for the run to finish (long poll)"),
    ] = 0.0,
) -> dict[str, Any]:
    """A training run. With ``wait``, the answer comes when the run has finished (or the
    wait is over): a run that published a model is answered once this server serves it,
    so the next recommendation already comes from it."""
    return await training.follow(engine, run_id, wait)


@router.get("/v1/models", tags=["training"])
def models(engine: Eng, _: Admin) -> dict[str, Any]:
    return training.models(engine)


# -- batch jobs ------------------------------------------------------------------------------
OutputOffset = Annotated[
    int | None, Query(ge=0, lt=2**63, description="first line of the page (0 is the first)")
]
OutputLimit = Annotated[
    int | None,
    Query(ge=1, le=MAX_PAGE_LINES, description=f"lines per page (default {PAGE_LINES})"),
]
NDJSON = "application/x-ndjson"


@router.post("/v1/batch-jobs", status_code=202, response_model=BatchJobView, tags=["batch"])
def create_batch_job(body: BatchJobBody, engine: Eng, key: Read) -> dict[str, Any]:
    """Recommendations for many readers (newsletters) or item affinity (segments), run in
    the background; follow it with GET /v1/batch-jobs/{id}. Within the key's quotas
    (``[batch]`` settings): 422 past the lines per job, 409 past the jobs running at once
    or the bytes of outputs kept; a job whose output passes its quota fails."""
    return batch.submit(engine, body.kind, body.lines, key)


@router.get("/v1/batch-jobs/{job_id}", response_model=BatchJobView, tags=["batch"])
def get_batch_job(job_id: str, engine: Eng, key: Read) -> dict[str, Any]:
    """A job's state (a key sees the jobs it made; an admin key, all of them); ``expired``
    once its output was deleted (retention), and
    ``erased_lines`` counts the output lines reader erasures changed since it finished."""
    return batch.job(engine, job_id, key)


@router.get("/v1/batch-jobs/{job_id}/output", tags=["batch"])
def get_batch_output(
    job_id: str,
    engine: Eng,
    key: Read,
    offset: OutputOffset = None,
    limit: OutputLimit = None,
) -> Response:
    """The job's answers as JSON lines (NDJSON), one per input line, in order; 409 until it
    succeeded, 410 once its output was deleted (retention). Without ``offset`` and ``limit``
    the whole output is streamed. With either, one page: ``limit`` lines from line
    ``offset`` (fewer when they pass 8 MiB), and while lines remain an ``x-next-offset``
    header with the ``offset`` of the next page. A reader erased meanwhile leaves
    ``{"line": n, "erased": true}`` in place of their line, so offsets never shift."""
    if offset is None and limit is None:
        return StreamingResponse(batch.output(engine, job_id, key), media_type=NDJSON)
    page, following = batch.page(engine, job_id, key, offset or 0, limit or PAGE_LINES)
    headers = {"x-next-offset": str(following)} if following is not None else None
    return Response(page, media_type=NDJSON, headers=headers)


@router.delete("/v1/batch-jobs/{job_id}", status_code=204, tags=["batch"])
def delete_batch_job(job_id: str, engine: Eng, key: Read) -> Response:
    """Delete a finished job's output and forget the job, freeing the key's quota."""
    batch.delete(engine, job_id, key)
    return Response(status_code=204)


# -- dead letters ----------------------------------------------------------------------------
@router.get("/v1/dead-letters", tags=["operations"])
def list_dead_letters(
    engine: Eng,
    _: Admin,
    state: Annotated[
        str, Query(pattern="^(parked|replay|done|purged|all)$", description="which letters")
    ] = "parked",
) -> dict[str, Any]:
    """Events a consumer could not process after its retries, with error and attempts."""
    letters = dead_letters.letters(engine, state)
    return {"dead_letters": letters, "count": len(letters)}


@router.get("/v1/dead-letters/{seq}", tags=["operations"])
def get_dead_letter(
    seq: Annotated[int, Path(ge=1, lt=2**63)], engine: Eng, _: Admin
) -> dict[str, Any]:
    """One dead letter and the event it holds (as stored in the log)."""
    return dead_letters.letter(engine, seq)


@router.post("/v1/dead-letters/replay", status_code=202, tags=["operations"])
def replay_dead_letters(body: DeadLetterSelection, engine: Eng, _: Admin) -> dict[str, int]:
    """Ask the consumer to process these letters again (after fixing their cause); it does
    on its next pass, and a letter still bad is parked again with its new error."""
    return {"requested": dead_letters.replay(engine, body.seqs)}


@router.post("/v1/dead-letters/purge", tags=["operations"])
def purge_dead_letters(body: DeadLetterSelection, engine: Eng, _: Admin) -> dict[str, int]:
    """Give up on these letters: they are never archived (the log keeps the events)."""
    return {"purged": dead_letters.purge(engine, body.seqs)}


@router.get("/v1/audit-log", tags=["operations"])
def get_audit_log(
    engine: Eng,
    _: Admin,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[
        int | None, Query(ge=1, lt=2**63, description="page back: entries below this id")
    ] = None,
) -> dict[str, Any]:
    """Every admin action, newest first: who (key name and id, or cli:<user>), what, on
    what, when, from where, and the answer's status."""
    return {"entries": operate.audit_log(engine, limit, before)}
