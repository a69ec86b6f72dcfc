"""The one place where engine errors become HTTP responses (always JSON, never a 5xx for input)."""

from __future__ import annotations

import logging
from typing import Any, TypeVar

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from clickrec.core.errors import (
    ClickrecError,
    Conflict,
    FieldError,
    Forbidden,
    Gone,
    InvalidInput,
    NotEnoughData,
    NotFound,
    StoreUnavailable,
    Unauthorized,
    Unparsable,
)

log = logging.getLogger("clickrec.api")


class JSON(Response):
    """A JSON response rendered by orjson (numpy-free, fast, strict)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


_STATUS: list[tuple[type[ClickrecError], int]] = [
    (Unparsable, 400),
    (InvalidInput, 422),
    (NotFound, 404),
    (Gone, 410),
    (Conflict, 409),
    (NotEnoughData, 409),
    (Unauthorized, 401),
    (Forbidden, 403),
    (StoreUnavailable, 503),
]
_BATCH_FIELDS = {"events", "items", "users", "item_ids"}


def error_body(message: str, errors: list[FieldError] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": message}
    if errors is not None:
        body["errors"] = [e.as_dict() for e in errors]
    return body


def _field_error(err: dict[str, Any]) -> FieldError:
    loc = [p for p in err.get("loc", ()) if p not in ("body", "query", "path")]
    index = None
    if len(loc) >= 2 and loc[0] in _BATCH_FIELDS and isinstance(loc[1], int):
        index = loc[1]
        loc = loc[2:] if loc[0] != "item_ids" else loc[:1]
    return FieldError(index, ".".join(str(p) for p in loc), str(err.get("msg", "invalid")))


M = TypeVar("M", bound=BaseModel)


class MalformedBody(InvalidInput):
    """The body is not JSON at all (400, not 422)."""


def parse_body(model: type[M], body: bytes) -> M:
    """Validate a raw JSON body against ``model`` with errors shaped like every other 4xx."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raw = exc.errors(include_url=False, include_input=False)
        if any(e["type"] == "json_invalid" for e in raw):
            raise MalformedBody("request body is not valid JSON") from exc
        raise InvalidInput([_field_error(dict(e)) for e in raw]) from exc


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI for a body a route parses itself (the schema lives in components)."""
    name = model.__name__
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
        }
    }


def add_body_schemas(schema: dict[str, Any], models: list[type[BaseModel]]) -> None:
    """Put the models that routes parse themselves into the schema's components."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in models:
        doc = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(doc.pop("$defs", {}))
        components[model.__name__] = doc


async def _validation(request: Request, exc: RequestValidationError) -> JSON:
    raw = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in raw):
        return JSON(error_body("request body is not valid JSON"), status_code=400)
    errors = [_field_error(e) for e in raw]
    if any(e.get("type") == "missing" and e.get("loc") == ("body",) for e in raw):
        return JSON(error_body("request body is required", errors), status_code=422)
    return JSON(error_body("invalid request", errors), status_code=422)


async def _engine_error(request: Request, exc: ClickrecError) -> JSON:
    return engine_error_response(exc)


def engine_error_response(exc: ClickrecError) -> JSON:
    """The JSON response for an engine error (also used by the raw ASGI routes)."""
    status = next((code for cls, code in _STATUS if isinstance(exc, cls)), 500)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if isinstance(exc, MalformedBody):
        return JSON(error_body(exc.errors[0].message), status_code=400)
    if isinstance(exc, InvalidInput):
        return JSON(error_body("invalid request", exc.errors), status_code=status)
    if status >= 500:
        log.error("%s: %s", type(exc).__name__, exc)
    return JSON(error_body(str(exc)), status_code=status, headers=headers)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSON:
    return JSON(
        error_body(str(exc.detail)),
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


async def _unexpected(request: Request, exc: Exception) -> JSON:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return JSON(error_body("internal error"), status_code=500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)  # type: ignore[arg-type]
    app.add_exception_handler(ClickrecError, _engine_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)
