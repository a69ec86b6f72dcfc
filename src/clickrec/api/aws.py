"""Amazon Personalize's wire API on clickrec's services, so boto3 works unmodified.

``personalize-events`` (PutEvents, PutItems, PutUsers) and ``personalize-runtime``
(GetRecommendations, GetPersonalizedRanking) at the paths, with the field names and error
shapes of botocore's service models; requests are signed with SigV4 (``sigv4``). The routes
are kept out of clickrec's OpenAPI schema: their contract is AWS's. The mapping of ARNs,
properties and errors is described in docs/personalize.md.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from clickrec.api import sigv4
from clickrec.app import catalog, ingest, recommend
from clickrec.core.errors import (
    ClickrecError,
    Conflict,
    FieldError,
    Forbidden,
    InvalidInput,
    NotFound,
    StoreUnavailable,
    Unauthorized,
)
from clickrec.core.types import Event, FilterValues, Item, MetadataColumns, User
from clickrec.engine import ServingEngine
from clickrec.ingestion.validation import parse_batch
from clickrec.serving.service import Extras, Promotion, Ranked, Selection

router = APIRouter(include_in_schema=False)
log = logging.getLogger("clickrec.api")

MAX_RESULTS = 500
DEFAULT_RESULTS = 25

# -- request shapes (botocore's service models; unknown members are ignored, like AWS) ------
Str = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Arn = Annotated[
    str, StringConstraints(max_length=256, pattern=r"^arn:[a-z\d-]+:personalize:[^:]*:[^:]*:.+$")
]
PromotionName = Annotated[
    str, StringConstraints(max_length=63, pattern=r"^[a-zA-Z0-9][a-zA-Z0-9\-_]*$")
]


class Shape(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class MetricAttribution(Shape):
    eventAttributionSource: Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class AwsEvent(Shape):
    eventId: Str | None = None
    eventType: Str
    eventValue: float | None = None
    itemId: Str | None = None
    properties: Annotated[str, StringConstraints(min_length=1, max_length=1024)] | None = None
    sentAt: datetime
    recommendationId: Annotated[str, StringConstraints(min_length=1, max_length=40)] | None = None
    impression: list[Str] | None = Field(default=None, min_length=1, max_length=25)
    metricAttribution: MetricAttribution | None = None


class PutEventsRequest(Shape):
    trackingId: Str
    userId: Str | None = None
    sessionId: Str
    eventList: list[AwsEvent] = Field(min_length=1, max_length=10)


class AwsItem(Shape):
    itemId: Str
    properties: Annotated[str, StringConstraints(min_length=1, max_length=32000)] | None = None


class PutItemsRequest(Shape):
    datasetArn: Arn
    items: list[AwsItem] = Field(min_length=1, max_length=10)


class AwsUser(Shape):
    userId: Str
    properties: Annotated[str, StringConstraints(min_length=1, max_length=24000)] | None = None


class PutUsersRequest(Shape):
    datasetArn: Arn
    users: list[AwsUser] = Field(min_length=1, max_length=10)


class AwsPromotion(Shape):
    name: PromotionName
    percentPromotedItems: int = Field(ge=1, le=100)
    filterArn: Arn
    filterValues: FilterValues | None = None


class GetRecommendationsRequest(Shape):
    campaignArn: Arn | None = None
    recommenderArn: Arn | None = None
    itemId: Str | None = None
    userId: Str | None = None
    numResults: int = Field(default=DEFAULT_RESULTS, ge=0, le=MAX_RESULTS)
    context: dict[str, str] | None = Field(default=None, max_length=150)
    filterArn: Arn | None = None
    filterValues: FilterValues | None = None
    promotions: list[AwsPromotion] | None = Field(default=None, max_length=3)
    metadataColumns: dict[str, MetadataColumns] | None = Field(default=None, max_length=1)


class GetPersonalizedRankingRequest(Shape):
    campaignArn: Arn
    inputList: list[Str] = Field(min_length=1, max_length=MAX_RESULTS)
    userId: Str
    context: dict[str, str] | None = Field(default=None, max_length=150)
    filterArn: Arn | None = None
    filterValues: FilterValues | None = None
    metadataColumns: dict[str, MetadataColumns] | None = Field(default=None, max_length=1)


# -- errors ----------------------------------------------------------------------------------
class AwsError(InvalidInput):
    """An input error with an AWS code of its own (SerializationException)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


_CODES: list[tuple[type[ClickrecError], int, str]] = [
    (Forbidden, 403, "AccessDeniedException"),
    (Unauthorized, 403, "UnrecognizedClientException"),
    (InvalidInput, 400, "InvalidInputException"),
    (NotFound, 404, "ResourceNotFoundException"),
    (Conflict, 409, "ResourceInUseException"),
    (StoreUnavailable, 503, "ServiceUnavailableException"),
]


def error_response(exc: ClickrecError) -> Response:
    """AWS's error shape: the code in ``x-amzn-ErrorType`` and in the body's ``__type``."""
    status, code = next(((s, c) for cls, s, c in _CODES if isinstance(exc, cls)), (500, ""))
    code = getattr(exc, "code", None) or code or "InternalFailure"
    return _json({"__type": code, "message": str(exc)}, status, {"x-amzn-ErrorType": code})


def _json(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    all_headers = {"x-amzn-RequestId": str(uuid.uuid4()), **(headers or {})}
    return Response(orjson.dumps(body), status, all_headers, "application/json")


def _problems(prefix: str, errors: list[FieldError], names: dict[str, str]) -> str:
    """FieldErrors as one message, fields named as in the AWS request (e.g. eventList.3.itemId)."""
    parts = []
    for e in errors:
        head, _, tail = e.field.partition(".")
        field = ".".join(p for p in (names.get(head, head), tail) if p)
        where = ".".join(str(p) for p in (prefix, e.index, field) if p not in (None, ""))
        parts.append(f"{where}: {e.message}" if where else e.message)
    return f"{len(parts)} validation error{'s' if len(parts) > 1 else ''} detected: " + "; ".join(
        parts
    )


M = TypeVar("M", bound=BaseModel)


def _parse(model: type[M], body: bytes) -> M:
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as exc:
        raw = exc.errors(include_url=False, include_input=False)
        if any(e["type"] == "json_invalid" for e in raw):
            raise AwsError("SerializationException", "the request body is not valid JSON") from exc
        errors = [FieldError(None, ".".join(str(p) for p in e["loc"]), e["msg"]) for e in raw]
        raise InvalidInput(_problems("", errors, {})) from exc


# -- names: ARNs and Personalize's schema fields ----------------------------------------------
def _resource_name(arn: str, kind: str, field: str) -> str:
    """The name at the end of an ARN like ``arn:aws:personalize:…:filter/<name>``."""
    resource = arn.split(":", 5)[5]
    head, _, name = resource.rpartition("/")
    if head.rpartition("/")[2] != kind or not re.fullmatch(r"[A-Za-z0-9_.\-]{1,64}", name):
        raise InvalidInput(f"{field} must name a {kind}: arn:aws:personalize:…:{kind}/<name>")
    return name


def field_name(name: str) -> str:
    """A Personalize schema field in the lower snake case clickrec stores it under
    (numberOfRatings and NUMBER_OF_RATINGS are both number_of_ratings)."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


_ITEM_FIELDS = {
    "category": "categories",
    "categories": "categories",
    "genre": "categories",
    "genres": "categories",
    "tags": "tags",
    "title": "title",
    "author": "author",
    "description": "text",
    "url": "url",
    "language": "language",
    "creation_timestamp": "published_at",
    "expires_at": "expires_at",
}
_LISTS = {"categories", "tags"}
_EVENT_FIELDS = {
    "event_id": "eventId",
    "user_id": "userId",
    "session_id": "sessionId",
    "item_id": "itemId",
    "event_type": "eventType",
    "event_value": "eventValue",
    "timestamp": "sentAt",
    "recommendation_id": "recommendationId",
    "context": "metricAttribution",
}


def _properties(text: str | None, where: str) -> dict[str, Any]:
    """A ``properties`` JSON string as a map of lower-snake-case names to values."""
    if text is None:
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise InvalidInput(f"{where}.properties: is not valid JSON") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"{where}.properties: must be a JSON object")
    return {field_name(k): v for k, v in value.items()}


def item_record(item: AwsItem, where: str) -> dict[str, Any]:
    """A Personalize item as a clickrec item: known fields by name, the rest attributes;
    categorical strings are split on ``|`` as Personalize does."""
    record: dict[str, Any] = {"item_id": item.itemId, "attributes": {}}
    for name, value in _properties(item.properties, where).items():
        target = _ITEM_FIELDS.get(name)
        if target is None:
            record["attributes"][name] = value
        elif target in _LISTS:
            parts = value.split("|") if isinstance(value, str) else value
            parts = parts if isinstance(parts, list) else [parts]
            record.setdefault(target, [])
            record[target].extend(p.strip() if isinstance(p, str) else p for p in parts)
        else:
            record[target] = value
    for target in _LISTS & record.keys():
        record[target] = _unique(record[target])
    return record


def _unique(parts: list[Any]) -> list[Any]:
    """Non-empty parts, repeats dropped; a nested list or object is kept for the item's
    validation to refuse by name (it cannot be a category)."""
    seen: set[Any] = set()
    out = []
    for part in parts:
        if isinstance(part, dict | list):
            out.append(part)
        elif part != "" and part not in seen:
            seen.add(part)
            out.append(part)
    return out


def _metadata_columns(columns: dict[str, list[str]] | None) -> dict[str, str]:
    """The requested columns (``{"ITEMS": [...]}``) by the clickrec field each reads."""
    if not columns:
        return {}
    dataset, names = next(iter(columns.items()))
    if dataset != "ITEMS":
        raise InvalidInput("metadataColumns: the only dataset is ITEMS")
    return {name: _ITEM_FIELDS.get(field_name(name), field_name(name)) for name in names}


def _column_value(value: Any) -> str | None:
    """An item field as Personalize's metadata string (lists joined with ``|``)."""
    if value is None or value == []:
        return None
    if isinstance(value, list | tuple):
        return "|".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _item_list(ranked: Ranked, columns: dict[str, str]) -> list[dict[str, Any]]:
    out = []
    for item in ranked.items:
        entry: dict[str, Any] = {"itemId": item["item_id"], "score": item["score"]}
        if item.get("promotion_name"):
            entry["promotionName"] = item["promotion_name"]
        if item.get("reason"):
            entry["reason"] = [item["reason"][:256]]
        if columns:
            fields = item.get("metadata") or {}
            values = {name: _column_value(fields.get(src)) for name, src in columns.items()}
            entry["metadata"] = {k: v for k, v in values.items() if v is not None}
        out.append(entry)
    return out


def _selection(arn: str | None, values: dict[str, str] | None, field: str) -> Selection | None:
    if arn is None:
        if values:
            raise InvalidInput(f"{field.replace('Arn', 'Values')}: given without {field}")
        return None
    return Selection(_resource_name(arn, "filter", field), values or {})


def _extras(columns: dict[str, str], promotions: list[AwsPromotion] | None) -> Extras:
    promos = promotions or []
    if sum(p.percentPromotedItems for p in promos) > 100:
        raise InvalidInput("promotions: percentPromotedItems add up to more than 100")
    return Extras(
        tuple(dict.fromkeys(columns.values())),
        tuple(
            Promotion(
                p.name,
                p.percentPromotedItems,
                _resource_name(p.filterArn, "filter", "promotions.filterArn"),
                p.filterValues or {},
            )
            for p in promos
        ),
    )


# -- the operations ----------------------------------------------------------------------------
Operation = Callable[[Request, ServingEngine, bytes], Awaitable[dict[str, Any]]]


async def _serve(request: Request, scope: str, operation: Operation) -> Response:
    """Check the signature and scope, run ``operation``, and answer in AWS's shapes."""
    engine: ServingEngine = request.app.state.engine
    body = await request.body()
    raw_path = request.scope.get("raw_path") or request.scope["path"].encode()
    signed = sigv4.SignedRequest(
        request.method,
        raw_path.decode("latin-1"),
        request.scope.get("query_string", b"").decode("latin-1"),
        [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]],
        body,
    )
    try:
        principal = sigv4.verify(engine.keys, signed, engine.clock.now())
        request.state.principal = principal
        principal.require(scope)
        return _json(await operation(request, engine, body))
    except ClickrecError as exc:
        return error_response(exc)
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(ClickrecError("internal error"))


async def _put_events(request: Request, engine: ServingEngine, body: bytes) -> dict[str, Any]:
    """PutEvents: the same validation and ingestion path as POST /v1/events. The trackingId
    is checked for form and not stored (clickrec has one event stream)."""
    req = _parse(PutEventsRequest, body)
    rows = []
    for i, e in enumerate(req.eventList):
        row = {
            "event_id": e.eventId,
            "user_id": req.userId,
            "session_id": req.sessionId,
            "item_id": e.itemId,
            "event_type": e.eventType,
            "event_value": e.eventValue,
            "timestamp": e.sentAt,
            "recommendation_id": e.recommendationId,
            "impression": e.impression,
            "properties": _properties(e.properties, f"eventList.{i}") or None,
            "context": (
                {"attribution_source": e.metricAttribution.eventAttributionSource}
                if e.metricAttribution
                else None
            ),
        }
        rows.append({k: v for k, v in row.items() if v is not None})
    try:
        events = parse_batch(Event, rows)
        await ingest.ingest(engine, request.app.state.metrics, events)
    except InvalidInput as exc:
        raise InvalidInput(_problems("eventList", exc.errors, _EVENT_FIELDS)) from exc
    return {}


async def _put_items(request: Request, engine: ServingEngine, body: bytes) -> dict[str, Any]:
    """PutItems: the dataset ARN is checked for form; every item lands in the one catalog."""
    req = _parse(PutItemsRequest, body)
    rows = [item_record(item, f"items.{i}") for i, item in enumerate(req.items)]
    try:
        items = parse_batch(Item, rows)
    except InvalidInput as exc:
        raise InvalidInput(_problems("items", exc.errors, {})) from exc

    await run_in_threadpool(catalog.put_items, engine, [i.to_record() for i in items])
    return {}


async def _put_users(request: Request, engine: ServingEngine, body: bytes) -> dict[str, Any]:
    """PutUsers: every property becomes a user attribute (by lower snake case name)."""
    req = _parse(PutUsersRequest, body)
    rows = [
        {"user_id": u.userId, "attributes": _properties(u.properties, f"users.{i}")}
        for i, u in enumerate(req.users)
    ]
    try:
        users = parse_batch(User, rows)
    except InvalidInput as exc:
        raise InvalidInput(_problems("users", exc.errors, {})) from exc
    await run_in_threadpool(catalog.put_users, engine, [u.model_dump() for u in users])
    return {}


async def _get_recommendations(
    request: Request, engine: ServingEngine, body: bytes
) -> dict[str, Any]:
    """GetRecommendations: related items with ``itemId``, else the user's recommendations;
    the campaign or recommender ARN is accepted and clickrec's live model answers."""
    req = _parse(GetRecommendationsRequest, body)
    metrics = request.app.state.metrics
    n = req.numResults or DEFAULT_RESULTS
    selection = _selection(req.filterArn, req.filterValues, "filterArn")
    columns = _metadata_columns(req.metadataColumns)
    extras = _extras(columns, req.promotions)
    if req.itemId is not None:
        if req.promotions:
            raise InvalidInput("promotions: not supported with itemId (related items)")
        ranked = recommend.similar(
            engine, metrics, req.itemId, n, None, selection, req.userId, extras
        )
    elif req.userId is not None:
        ranked = recommend.recommend(
            engine, metrics, req.userId, None, n, None, selection, extras, req.context
        )
    else:
        raise InvalidInput("give userId, or itemId for related items")
    return {"itemList": _item_list(ranked, columns), "recommendationId": ranked.recommendation_id}


async def _get_personalized_ranking(
    request: Request, engine: ServingEngine, body: bytes
) -> dict[str, Any]:
    """GetPersonalizedRanking: the input items reordered for the user, best first."""
    req = _parse(GetPersonalizedRankingRequest, body)
    selection = _selection(req.filterArn, req.filterValues, "filterArn")
    columns = _metadata_columns(req.metadataColumns)
    extras = _extras(columns, None)
    ranked = recommend.rank(
        engine,
        request.app.state.metrics,
        req.userId,
        None,
        req.inputList,
        selection,
        extras,
        req.context,
    )
    return {
        "personalizedRanking": _item_list(ranked, columns),
        "recommendationId": ranked.recommendation_id,
    }


@router.post("/events")
async def put_events(request: Request) -> Response:
    return await _serve(request, "ingest", _put_events)


@router.post("/items")
async def put_items(request: Request) -> Response:
    return await _serve(request, "ingest", _put_items)


@router.post("/users")
async def put_users(request: Request) -> Response:
    return await _serve(request, "ingest", _put_users)


@router.post("/recommendations")
async def get_recommendations(request: Request) -> Response:
    return await _serve(request, "read", _get_recommendations)


@router.post("/personalize-ranking")
async def get_personalized_ranking(request: Request) -> Response:
    return await _serve(request, "read", _get_personalized_ranking)
