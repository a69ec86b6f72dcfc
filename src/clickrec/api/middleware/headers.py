"""Security headers on every answer, and CORS for the routes a browser page may call."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clickrec.api.middleware.observability import Unrouted
from clickrec.api.middleware.refusal import refuse
from clickrec.keys import KeyRing

HSTS = [(b"strict-transport-security", b"max-age=31536000; includeSubDomains")]
# Every response but the dashboard page (PAGES) is JSON or a static file: none may be
# framed or run a script. A strict policy costs nothing and protects any new page by default.
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
]
# The one HTML page, the built-in dashboard (api/dashboard.py), runs its own script and
# style files and fetches its data: from this origin only, still no inline code.
PAGE_CSP = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    b"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# The API reference (api/docs.py): Swagger UI sets inline styles and draws icons from
# data: URLs; its scripts still come from this origin only.
DOCS_CSP = (
    b"default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    b"img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    b"frame-ancestors 'none'"
)


def _with_csp(csp: bytes) -> list[tuple[bytes, bytes]]:
    return [(k, csp if k == b"content-security-policy" else v) for k, v in SECURITY_HEADERS]


PAGES = {
    "/dashboard": _with_csp(PAGE_CSP),
    "/docs": _with_csp(DOCS_CSP),
    # The page tracker (api/site.py) says itself how long browsers keep it: every page of a
    # site loads it, and no-store would fetch it again on each.
    "/tracker.js": [h for h in SECURITY_HEADERS if h[0] != b"cache-control"],
}
PREFLIGHT = Unrouted("preflight")


class Cors:
    """Browser access to the routes a page may call (POST /v1/events): from the origins of
    live tracker keys and the configured ones. Preflights are answered by the middleware,
    never by a handler; other routes get no CORS headers, so browsers refuse them."""

    MAX_AGE = b"600"

    def __init__(self, keys: KeyRing, paths: set[str], extra: list[str]) -> None:
        self.keys = keys
        self.paths = paths
        self.extra = frozenset(o.rstrip("/").lower() for o in extra)

    def origin(self, scope: Scope) -> str | None:
        """The request's Origin when this path allows it from there, else None."""
        if scope["path"] not in self.paths:
            return None
        raw = next((v for k, v in scope.get("headers", []) if k == b"origin"), None)
        if raw is None:
            return None
        origin = raw.decode("latin-1")
        if origin in self.extra or origin in self.keys.tracker_origins():
            return origin
        return None

    def is_preflight(self, scope: Scope) -> bool:
        return scope["method"] == "OPTIONS" and any(
            k == b"access-control-request-method" for k, _ in scope.get("headers", [])
        )

    def preflight_headers(self, origin: str) -> list[tuple[bytes, bytes]]:
        return [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-allow-methods", b"POST"),
            (b"access-control-allow-headers", b"authorization, content-type"),
            (b"access-control-max-age", self.MAX_AGE),
            (b"vary", b"Origin"),
        ]


class SecurityHeadersMiddleware:
    """On every HTTP answer: no sniffing, no referrer, no caching, no framing, a strict
    content security policy (the dashboard's and the docs' own on those pages), HSTS over
    HTTPS, and the CORS headers when ``cors`` allows the request's origin. CORS preflights
    are answered here: 204 with what the path allows, or 403 for another origin."""

    def __init__(self, app: ASGIApp, cors: Cors | None = None) -> None:
        self.app = app
        self.cors = cors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = PAGES.get(scope["path"], SECURITY_HEADERS)
        if scope.get("scheme") == "https":
            headers = headers + HSTS
        origin = self.cors.origin(scope) if self.cors is not None else None
        if self.cors is not None and self.cors.is_preflight(scope):
            scope["route"] = PREFLIGHT
            if origin is not None:
                headers = headers + self.cors.preflight_headers(origin)
            await self._answer_preflight(origin is not None, _adding(headers, send))
            return
        if origin is not None:
            headers = headers + [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"vary", b"Origin"),
            ]
        await self.app(scope, receive, _adding(headers, send))

    @staticmethod
    async def _answer_preflight(allowed: bool, send: Send) -> None:
        if not allowed:
            await refuse(send, 403, "this origin may not call this path")
            return
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body", "body": b""})


def _adding(headers: list[tuple[bytes, bytes]], send: Send) -> Send:
    """``send`` with ``headers`` added to the response's own."""

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), *headers]
        await send(message)

    return send_with_headers
